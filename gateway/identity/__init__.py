"""Identity: who the caller is. Accounts, passwords, sign-in, sessions, lockout, invites, API tokens, user groups.

The sign-in gate every page passes is here (``require_login``); it also holds
a half-signed-in session to the second step and a user who must enrol to the
enrolment page (``mfa.gate``). Ahead of it runs the trusted proxy's header
sign-in (``header_auth``). The bearer-token gate of the API is ``api.auth``.
Revocation has one entry, ``accounts.revoke_access``: a password reset or
change, an MFA reset and disabling a user end every session and API token in
the same commit. May import: ``platform``, ``db``, ``audit``; never ``runs`` or
the delivery layer.
"""

from __future__ import annotations

from flask import Flask, jsonify, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response

from gateway.identity import sessions, views
from gateway.identity.mfa import gate as mfa_gate
from gateway.identity.views import bp
from gateway.platform.extensions import login_manager

# Endpoints reachable without signing in. Everything else needs a user.
# auth.invite, auth.invite_name: a user with an invite link has no password yet (the link's token is the credential).
# auth.oidc_login / auth.oidc_callback: the OIDC flow is how an anonymous browser signs in.
# i18n.set_language: the sign-in page's language switch (a POST with CSRF; it sets a cookie, nothing else).
PUBLIC_ENDPOINTS = frozenset(
    {
        "auth.login", "auth.invite", "auth.invite_name", "auth.oidc_login", "auth.oidc_callback", "i18n.set_language",
        "static", "health.livez", "health.healthz", "health.readyz", "health.metrics",
    }
)  # fmt: skip


def require_login() -> Response | None:
    """The sign-in gate: one before_request hook with explicit exemptions, not a decorator per view."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if current_user.is_authenticated:
        return mfa_gate.enrolment_first(current_user._get_current_object())
    if mfa_gate.may_pass_half_signed_in():
        return None
    if request.path.startswith("/api/") or request.path.startswith("/shell2http/"):
        response = jsonify(
            error={"code": "unauthorized", "message": "Sign-in or a bearer token is required.", "details": {}}
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
        return response
    second_step = mfa_gate.to_second_step()
    if second_step is not None:
        return second_step
    if views.is_form_post():  # the session ended while the form was open: sign in, then back to its page
        return views.sign_in_again()
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


def init_app(app: Flask) -> None:
    # Imported late, for their routes and hooks: /invite needs gateway.accounts; /login/oidc and its
    # callback; /login/mfa; header_auth is the trusted proxy's hook.
    from gateway.identity import header_auth, invite, oidc_views  # noqa: F401
    from gateway.identity.mfa import pages  # noqa: F401

    login_manager.init_app(app)
    login_manager.session_protection = None  # server-side records do this job (see sessions.py)
    login_manager.login_view = "auth.login"
    login_manager.user_loader(sessions.load_user)
    app.register_blueprint(bp)
    app.register_error_handler(CSRFError, views.session_ended)  # a form sent after the session ended
    header_auth.init_app(app)  # right after the network allowlist: the proxy's user is settled before anything else
    app.before_request(require_login)
