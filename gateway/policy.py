"""The permission vocabulary, in one module: predicates paired with enforcers.

Views never decide who may do what; they ask here.  The command permission
decision (``can_run`` / ``require_run``) joins this module with the engine.
"""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_login import current_user


def is_admin(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active and user.is_admin)


def require_admin() -> None:
    """Staff and anonymous callers get 404 on admin routes: nothing says the route exists."""
    if not is_admin(current_user):
        abort(404)
