"""Bearer tokens and browser sessions for the JSON API and the Shell2HTTP layer.

A request that carries ``Authorization: Bearer ...`` under ``/api/`` or
``/shell2http/`` is authenticated by the token alone: its session cookie (if
any) is ignored and no session cookie is ever set on the answer, so a token
client never turns into a cookie client.  A browser session also works, but
then every unsafe method needs a valid ``X-CSRFToken`` header.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface, SessionInterface
from flask_login import current_user
from flask_wtf.csrf import validate_csrf
from wtforms.validators import ValidationError

from gateway.api.errors import ApiError
from gateway.identity import tokens

API_PREFIXES = ("/api/", "/shell2http/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_value(req: Any) -> str | None:
    """The token of an ``Authorization: Bearer`` header on an API path, else None."""
    if not req.path.startswith(API_PREFIXES):
        return None
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def load_user_from_request(req: Any) -> Any:
    """flask-login's request loader: the active owner of a valid, unrevoked, unexpired token."""
    value = bearer_value(req)
    if value is None:
        return None
    user = tokens.authenticate(value)
    if user is not None:
        g.api_bearer = value
    return user


class TokenAwareSessions(SessionInterface):
    """Wraps the app's session interface: bearer requests get an empty session and never a cookie."""

    def __init__(self, inner: SecureCookieSessionInterface):
        self.inner = inner

    def open_session(self, app: Flask, req: Any) -> Any:
        if bearer_value(req) is not None:
            return self.inner.session_class()
        return self.inner.open_session(app, req)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        if bearer_value(request) is not None:
            return None
        return self.inner.save_session(app, session, response)

    def make_null_session(self, app: Flask) -> Any:
        return self.inner.make_null_session(app)

    def is_null_session(self, obj: object) -> bool:
        return self.inner.is_null_session(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def is_bearer_request() -> bool:
    return bool(g.get("api_bearer"))


def require_csrf_for_sessions() -> None:
    """Blueprint hook: session-authenticated unsafe requests need ``X-CSRFToken``; token requests do not."""
    if request.method in SAFE_METHODS or is_bearer_request():
        return
    try:
        validate_csrf(request.headers.get("X-CSRFToken"))
    except ValidationError:
        raise ApiError(
            403, "forbidden", "A browser-session request needs a valid X-CSRFToken header.",
            {"X-CSRFToken": "missing or invalid"},
        ) from None  # fmt: skip


def still_authorised() -> bool:
    """Re-check the caller during a long stream: a revoked token or disabled user ends it."""
    bearer = g.get("api_bearer")
    if bearer:
        return tokens.authenticate(bearer) is not None
    from gateway.identity import sessions

    user = current_user._get_current_object()
    return getattr(user, "id", None) is not None and sessions.load_user(str(user.id)) is not None


def init_app(app: Flask) -> None:
    from gateway.platform.extensions import login_manager

    login_manager.request_loader(load_user_from_request)
    interface = app.session_interface
    if isinstance(interface, TokenAwareSessions):
        return
    if not isinstance(interface, SecureCookieSessionInterface):
        # Without the wrapper a bearer request would be handed a session cookie: refuse to start.
        raise RuntimeError(f"the API expects Flask's cookie sessions, not {type(interface).__name__}")
    app.session_interface = TokenAwareSessions(interface)
