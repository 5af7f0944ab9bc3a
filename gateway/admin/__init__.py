"""Admin pages. The blueprint guards itself once: every route under /admin requires an admin.

Views only translate forms into calls of the audited service functions
(``accounts``, ``groups``, ``commands``, ``tokens``, ``runs``), which write the
change and its audit event in one commit; nothing here writes a table itself.

The blueprint (and its admin guard) is defined in ``blueprint``; the view modules register
their routes on it when this package imports them.  May import every domain package and
``gateway.web.shared``; no domain package imports this one.
"""

from __future__ import annotations

from gateway.admin import audit, commands, deliveries, groups, mfa, runs, schedules, tokens, users  # noqa: F401
from gateway.admin.blueprint import bp

__all__ = ["bp"]
