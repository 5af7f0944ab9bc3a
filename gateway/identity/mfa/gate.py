"""What the one sign-in gate asks about second factors (``gateway.identity.require_login``).

Two states stop a browser short of the gateway: a *half-signed-in* session
(password accepted, second factor not yet; its record says ``mfa_pending``)
reaches only the second step, and a signed-in user whom ``MFA_REQUIRED``
covers and who has no second factor reaches only the enrolment page. Pages
redirect there; the API answers 401 (half-signed-in: nobody is signed in) or
403 (enrol first). Bearer tokens are separate credentials and pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import jsonify, redirect, request, url_for
from werkzeug.wrappers import Response

from gateway.db.models import User, UserSession
from gateway.identity import sessions
from gateway.identity.mfa import factors
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

# How long a half-signed-in session waits for its second factor.
PENDING_FOR = timedelta(minutes=5)
API_PREFIXES = ("/api/", "/shell2http/")
# What a half-signed-in session may reach: the second step (and its passkey challenge), and giving up.
SECOND_STEP_ENDPOINTS = frozenset(
    {"auth.login_mfa", "auth.login_mfa_cancel", "auth.passkey_login_options", "auth.passkey_login"}
)
# What a user who must enrol may reach before anything else: the enrolment page and its forms, signing out.
ENROLMENT_ENDPOINTS = frozenset(
    {
        "web.account_mfa", "web.mfa_totp_start", "web.mfa_totp_confirm", "web.passkey_register_options",
        "web.passkey_register", "auth.logout", "static",
    }
)  # fmt: skip


@dataclass(frozen=True)
class HalfSignedIn:
    record: UserSession
    user: User


def half_signed_in() -> HalfSignedIn | None:
    """This browser's session when its password was accepted and its second factor is still awaited (5 minutes)."""
    record = sessions.current_record()
    if record is None or not record.mfa_pending or record.revoked_at is not None:
        return None
    if utcnow() - record.created_at > PENDING_FOR:
        return None
    user = db.session.get(User, record.user_id)
    if user is None or not user.active:
        return None
    return HalfSignedIn(record=record, user=user)


def _is_api() -> bool:
    return request.path.startswith(API_PREFIXES)


def may_pass_half_signed_in() -> bool:
    """A half-signed-in session reaches the second step's own endpoints, nothing else."""
    return request.endpoint in SECOND_STEP_ENDPOINTS and half_signed_in() is not None


def to_second_step() -> Response | None:
    """A page asked by a half-signed-in session: to the second step (None when the session is not half-signed-in)."""
    return redirect(url_for("auth.login_mfa")) if half_signed_in() is not None else None


def enrolment_first(user: User) -> Response | None:
    """For a signed-in browser session: a user who must set up a second factor and has none goes to enrol first."""
    if request.endpoint in ENROLMENT_ENDPOINTS or sessions.current_record() is None:
        return None  # no session record: a bearer token authenticated this request
    if not factors.must_enrol(user):
        return None
    if _is_api():
        response = jsonify(
            error={
                "code": "forbidden",
                "message": "Set up a second sign-in factor first, on your account's two-factor page.",
                "details": {"mfa": "enrolment required"},
            }
        )
        response.status_code = 403
        return response
    return redirect(url_for("web.account_mfa"))
