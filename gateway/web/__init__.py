"""Staff pages: dashboard and status tiles, run forms, run pages, history, approvals, account.

Every page is server-rendered and works without JavaScript; the small scripts
in ``gateway/static`` only add live output, ticking clocks and tile refreshes.
Views decide nothing about permissions: they ask ``gateway.access.policy`` and start
runs only through ``gateway.runs.start``.

The blueprint is defined in ``blueprint``; the view modules register their routes on it
when this package imports them.  May import every domain package; no domain package
imports this one.
"""

from __future__ import annotations

from gateway.web import account, approvals, commands, dashboard, history, mfa, runpage  # noqa: F401  (their routes)
from gateway.web.blueprint import bp

__all__ = ["bp"]
