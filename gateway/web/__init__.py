"""Staff pages: dashboard and status tiles, run forms, run pages, history, account.

Every page is server-rendered and works without JavaScript; the small scripts
in ``gateway/static`` only add live output, ticking clocks and tile refreshes.
Views decide nothing about permissions: they ask ``gateway.access.policy`` and start
runs only through ``gateway.runs.start``.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("web", __name__)

from gateway.web import account, commands, dashboard, history, runpage, shared  # noqa: E402, F401

bp.add_app_template_filter(shared.clock, "clock")
bp.add_app_template_filter(shared.stamp, "stamp")
bp.add_app_template_filter(shared.duration, "duration")
bp.add_app_template_filter(shared.cell_class, "cell_class")
