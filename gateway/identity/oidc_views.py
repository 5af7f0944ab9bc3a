"""OIDC sign-in routes: ``GET /login/oidc`` sends the browser to the IdP, ``GET /login/oidc/callback`` signs it in.

The pre-login state (``state``, ``nonce``, the PKCE verifier, where to go
next) lives only in the signed session cookie, one pending sign-in at a time,
and is taken out at the callback whatever happens: nothing on the server grows
with anonymous starts, and a callback URL works once. Every refusal renders the
sign-in page with a message and writes ``auth.login_failed`` naming the reason
with ``detail.method`` ``oidc``; neither the code nor a token is logged or
recorded. Creating an API token asks an OIDC user for a sign-in younger than
ten minutes (``confirmation_for_tokens``); "sign in again" is this flow with
``max_age=0``.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from typing import Any, Literal

from flask import abort, current_app, redirect, request, session, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from gateway.db.models import User
from gateway.identity import external, oidc, sessions
from gateway.identity.external import ExternalIdentity, SignInRefused
from gateway.identity.idp_links import claimed_groups
from gateway.identity.limits import address_key, login_limit
from gateway.identity.oidc import LEEWAY_SECONDS, OidcFailure
from gateway.identity.redirects import safe_next
from gateway.identity.views import bp, render_login
from gateway.platform.extensions import limiter
from gateway.platform.phrases import N_

log = logging.getLogger(__name__)

PENDING_KEY = "oidc_pending"
# When the IdP last authenticated this browser's user (its auth_time), kept in the signed cookie.
AUTH_AT_KEY = "oidc_auth_at"
# A sign-in started longer ago than this is refused at the callback (the IdP's pages do not take that long).
PENDING_SECONDS = 15 * 60
# Creating an API token asks an OIDC user for a sign-in at most this old.
RECENT_SIGN_IN_SECONDS = 10 * 60
REFUSAL_STATUS = {"username_taken": 409, "user_disabled": 403, "no_username": 403}
ERROR_CODE = re.compile(r"[a-z_]{1,40}")
MAX_CODE_LENGTH = 4096


def _require_oidc() -> None:
    if "oidc" not in current_app.config["AUTH_METHODS"]:
        abort(404)


def _refused(reason: str, message: str, status: int, user: User | None = None) -> tuple[str, int]:
    """The sign-in page with the message, and the capped ``auth.login_failed`` naming the reason."""
    log.warning("OIDC sign-in refused: %s", reason)
    external.record_refusal(SignInRefused(reason, message, user), "oidc")
    return render_login(error=message, status=status)


@bp.route("/login/oidc")
@limiter.limit(login_limit, key_func=address_key)
def oidc_login() -> Response | tuple[str, int]:
    """Start a sign-in at the IdP: a fresh state, nonce and PKCE verifier in the cookie, then the redirect."""
    _require_oidc()
    target = safe_next(request.args.get("next"))
    max_age = 0 if request.args.get("max_age") == "0" else None
    if current_user.is_authenticated and max_age is None:
        return redirect(target)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    try:
        url = oidc.client().authorization_url(state=state, nonce=nonce, code_verifier=verifier, max_age=max_age)
    except OidcFailure as failure:
        return _refused(failure.reason, failure.message, failure.status)
    session[PENDING_KEY] = {
        "state": state, "nonce": nonce, "verifier": verifier, "next": target, "max_age": max_age,
        "at": int(time.time()),
    }  # fmt: skip
    return redirect(url)


@bp.route("/login/oidc/callback")
@limiter.limit(login_limit, key_func=address_key)
def oidc_callback() -> Response | tuple[str, int]:
    """Finish the sign-in: check the state, redeem the code, check the ID token, then the shared account rules."""
    _require_oidc()
    pending = session.pop(PENDING_KEY, None)  # single use, whatever follows
    try:
        checked = _checked_pending(pending)
        identity, auth_at = _identity(checked)
        external.sign_in(identity)
    except OidcFailure as failure:
        return _refused(failure.reason, failure.message, failure.status)
    except SignInRefused as refused:
        return _refused(refused.reason, refused.message, REFUSAL_STATUS.get(refused.reason, 403), refused.user)
    session[AUTH_AT_KEY] = auth_at
    return redirect(safe_next(checked["next"]))


def _checked_pending(pending: object) -> dict[str, Any]:
    """The pending sign-in this callback answers, or ``bad_state``/``idp_error``."""
    state = request.args.get("state", "")
    if (
        not isinstance(pending, dict)
        or not isinstance(pending.get("state"), str)
        or not hmac.compare_digest(pending["state"].encode(), state.encode("utf-8", "replace"))
        or not isinstance(pending.get("at"), int)
        or time.time() - pending["at"] > PENDING_SECONDS
    ):
        message = N_("This sign-in did not start in this browser, or it expired. Sign in again.")
        raise OidcFailure("bad_state", message, 400)
    client = oidc.client()
    # RFC 9207: an IdP that names itself in the response must be ours (a mix-up attack names another).
    if "iss" in request.args and request.args["iss"] != client.issuer:
        raise OidcFailure("bad_state", N_("The answer came from another identity provider. Sign in again."), 400)
    error = request.args.get("error")
    if error is not None:
        shown = error if ERROR_CODE.fullmatch(error) else "error"
        raise OidcFailure("idp_error", N_("The identity provider refused the sign-in (%(code)s).", code=shown), 401)
    code = request.args.get("code", "")
    if not code or len(code) > MAX_CODE_LENGTH:
        raise OidcFailure("idp_error", N_("The identity provider sent no sign-in code. Sign in again."), 400)
    return {**pending, "code": code}


def _identity(pending: dict[str, Any]) -> tuple[ExternalIdentity, int]:
    """Redeem the code and turn the checked claims into the identity the shared rules sign in."""
    client = oidc.client()
    config = current_app.config
    token = client.redeem(pending["code"], pending["verifier"])
    max_age = pending.get("max_age")
    claims = client.id_token_claims(
        token, nonce=pending["nonce"], max_age=max_age, required_acr=config["OIDC_REQUIRED_ACR"]
    )
    auth_time = claims.get("auth_time")
    if max_age == 0 and (not isinstance(auth_time, int | float) or auth_time < pending["at"] - LEEWAY_SECONDS):
        raise oidc.bad_token(N_("the identity provider did not sign you in again"))
    username_claim, groups_claim = config["OIDC_USERNAME_CLAIM"], config["OIDC_GROUPS_CLAIM"]
    if groups_claim not in claims or username_claim not in claims:
        # Userinfo only when the token lacks a claim we need; its sub must be the token's (checked there).
        claims = {**client.userinfo(token.get("access_token"), claims["sub"]), **claims}
    raw_username, display_name = claims.get(username_claim), claims.get("name")
    identity = ExternalIdentity(
        method="oidc",
        issuer=client.issuer,
        subject=claims["sub"],
        raw_username=raw_username if isinstance(raw_username, str) else None,
        display_name=display_name if isinstance(display_name, str) else None,
        groups=claimed_groups(claims[groups_claim]) if groups_claim in claims else None,
    )
    auth_at = int(auth_time) if isinstance(auth_time, int | float) else int(time.time())
    return identity, min(auth_at, int(time.time()))


# --- the account page's question before a new API token ---------------------------------------

Confirmation = Literal["password", "recent_sign_in", "none"]


def confirmation_for_tokens(user: User) -> Confirmation:
    """What creating an API token asks of this session: header sessions nothing, OIDC users a recent sign-in."""
    record = sessions.current_record()
    method = record.method if record is not None else "local"
    if method == "header":
        return "none"  # the proxy authenticates every request
    if method == "oidc" or user.source == "oidc":
        return "recent_sign_in"
    return "password"


def signed_in_recently() -> bool:
    """True when this browser's OIDC sign-in (the IdP's auth_time) is at most ten minutes old."""
    record = sessions.current_record()
    at = session.get(AUTH_AT_KEY)
    if record is None or record.method != "oidc" or not isinstance(at, int):
        return False
    return time.time() - at <= RECENT_SIGN_IN_SECONDS


def sign_in_again_url(target: str) -> str:
    """The OIDC flow with ``max_age=0`` (the IdP must authenticate again), returning to ``target``."""
    return url_for("auth.oidc_login", next=target, max_age=0)
