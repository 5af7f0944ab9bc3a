"""The API's own Flask-Limiter limits, counted per user across all their tokens and browser sessions.

The choices route may run its source query on every call (a cache hit writes
nothing, so nothing else bounds it): ``CHOICES_RATE_LIMIT`` caps one user's
calls, in the ``RATELIMIT_STORAGE_URI`` storage every replica shares.  Past it
the route answers 429 ``rate_limited`` with ``Retry-After`` (the app's error
handler), and other users are unaffected.
"""

from __future__ import annotations

from flask import current_app
from flask_login import current_user


def choices_limit() -> str:
    limit: str = current_app.config["CHOICES_RATE_LIMIT"]
    return limit


def user_key() -> str:
    """The signed-in user's id (the sign-in gate runs before any limited API view)."""
    return f"api-user:{current_user.get_id()}"
