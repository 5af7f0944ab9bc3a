"""The account page: change my password, manage my API tokens (a new token is shown once).

Guessing the current password here is as limited as guessing it at sign-in:
the same per-address and per-name rate limit, and each wrong guess counts
toward the same per-name lock (``gateway.auth.throttle``); while the name is
locked the check is not even made. A new token is shown after a redirect
(``gateway.reveal``), so refreshing the page does not create another.
"""

from __future__ import annotations

import math

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from gateway import accounts, audit, reveal, tokens
from gateway.auth import service, throttle
from gateway.auth.passwords import password_problem, verify_password
from gateway.auth.views import LOCKED_MESSAGE, _address_key, _login_limit
from gateway.extensions import limiter
from gateway.netguard import client_address
from gateway.timeutil import utcnow
from gateway.web import bp
from gateway.web.shared import me

EXPIRY_CHOICES = {"30": 30, "90": 90, "365": 365, "never": None}
TOKEN_REVEAL = "account-token"  # nosec B105  # the name of a reveal slot, not a token


def _actor() -> dict[str, object]:
    user = me()
    return {"id": user.id, "name": user.username}


def render_account(
    password_errors: dict[str, str] | None = None,
    token_error: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    page = render_template(
        "account.html",
        tokens=tokens.tokens_of(me()),
        password_errors=password_errors or {},
        token_error=token_error,
        new_token=reveal.take(TOKEN_REVEAL),
        expiry_choices=EXPIRY_CHOICES,
    )
    return page, status


@bp.route("/account")
def account() -> tuple[str, int]:
    return render_account()


# Field names and messages, not secrets (ruff's S105/S106 read "password" as a credential).
# ruff: noqa: S105, S106


def password_change_errors(user: object, current: str, new: str, confirm: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not verify_password(getattr(user, "password_hash", None), current):
        errors["current_password"] = "This is not your current password."  # nosec B105  # a message to the user, not a password
    problem = password_problem(new)
    if problem:
        errors["new_password"] = f"The new password {problem}."
    elif new != confirm:
        errors["confirm_password"] = "The two new passwords are not the same."  # nosec B105  # a message to the user, not a password
    elif new == current:
        errors["new_password"] = "The new password must differ from the current one."  # nosec B105  # a message to the user, not a password
    return errors


def _my_name_key() -> str:
    """The sign-in limit's per-name key, for the signed-in user's own name."""
    return "login-user:" + getattr(me(), "username", "")


@bp.route("/account/password", methods=["POST"])
@limiter.limit(_login_limit, key_func=_address_key, methods=["POST"])
@limiter.limit(_login_limit, key_func=_my_name_key, methods=["POST"])
def change_password() -> Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    user = me()
    locked_until = throttle.locked_until(user.username)
    if locked_until is not None:
        audit.record_capped("auth.login_failed", actor=_actor(), outcome="locked", detail={"via": "password_change"})
        page, status = render_account(password_errors={"current_password": LOCKED_MESSAGE}, status=429)
        return page, status, {"Retry-After": str(max(1, math.ceil((locked_until - utcnow()).total_seconds())))}
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    errors = password_change_errors(user, current, new, request.form.get("confirm_password", ""))
    if "current_password" in errors:
        service.record_failure(user.username, user, via="password_change")
    if errors:
        return render_account(password_errors=errors, status=400)
    try:
        accounts.set_password(user, new, actor=_actor())
    except accounts.AccountError as exc:
        return render_account(password_errors={"new_password": str(exc).split(": ", 1)[-1]}, status=400)
    flash("Your password was changed and every session was signed out. Sign in with the new password.")
    return redirect(url_for("auth.login"), 303)


@bp.route("/account/tokens", methods=["POST"])
def create_token() -> Response | tuple[str, int]:
    name = request.form.get("name", "").strip()
    expiry = request.form.get("expires", "90")
    if expiry not in EXPIRY_CHOICES:
        return render_account(token_error="Choose how long the token stays valid.", status=400)  # nosec B106  # a message to the user, not a token
    if not name:
        return render_account(token_error="Give the token a name, so you can recognise it later.", status=400)  # nosec B106  # a message to the user, not a token
    try:
        issued = tokens.create_token(
            me(), name=name, expires_days=EXPIRY_CHOICES[expiry], actor=_actor(),
            source_ip=client_address(), user_agent=request.headers.get("User-Agent"),
        )  # fmt: skip
    except tokens.TokenError as exc:
        return render_account(token_error=str(exc).split(": ", 1)[-1].capitalize() + ".", status=400)
    reveal.stash(TOKEN_REVEAL, issued.secret)
    return redirect(url_for("web.account", _anchor="tokens-heading"), 303)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(token_id: int) -> Response:
    user = me()
    if not any(token.id == token_id for token in tokens.tokens_of(user)):
        abort(404)
    if tokens.revoke(token_id, actor=_actor(), owner=user, source_ip=client_address()):
        flash("The token was revoked; it no longer works.")
    else:
        flash("That token was already revoked.")
    return redirect(url_for("web.account"), 303)
