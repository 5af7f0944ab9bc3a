"""Admin pages. The blueprint guards itself once: every route under /admin requires an admin.

Views only translate forms into calls of the audited service functions
(``accounts``, ``groups``, ``commands``, ``tokens``, ``runs``), which write the
change and its audit event in one commit; nothing here writes a table itself.
"""

from __future__ import annotations

from flask import Blueprint

from gateway.access.policy import require_admin

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(require_admin)

from gateway.admin import audit, commands, groups, runs, tokens, users  # noqa: E402, F401
