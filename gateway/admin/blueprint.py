"""The admin pages' blueprint, guarded once: every route under /admin requires an admin.

Apart from the package so each view module can import it without a circle.
"""

from __future__ import annotations

from flask import Blueprint

from gateway.access.policy import require_admin

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(require_admin)
