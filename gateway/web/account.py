"""The account page: change my password, manage my API tokens (a new token is shown once).

Changing the password and creating a token both ask for the current
password; for a token, an OIDC user is asked instead for a sign-in younger
than ten minutes ("sign in again" runs the flow with ``max_age=0``) and a
trusted-header session for nothing (the proxy authenticates every request):
``gateway.identity.oidc_views.confirmation_for_tokens``. Guessing the
password here is as limited as guessing it at sign-in: the same per-address
and per-name rate limit, and each wrong guess counts toward the same per-name
lock (``gateway.identity.service.confirm_password``); while the name is
locked the check is not even made. A new token is shown after a redirect
(``gateway.platform.reveal``), so refreshing the page does not create another.
"""

from __future__ import annotations

import math

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from gateway.identity import accounts, oidc_views, service, tokens
from gateway.identity.limits import address_key, login_limit, own_name_key
from gateway.identity.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from gateway.identity.views import LOCKED_MESSAGE
from gateway.platform import reveal
from gateway.platform.addresses import client_address
from gateway.platform.extensions import limiter
from gateway.platform.phrases import on_page
from gateway.platform.timeutil import utcnow
from gateway.web.blueprint import bp
from gateway.web.shared import me

EXPIRY_CHOICES = {"30": 30, "90": 90, "365": 365, "never": None}
TOKEN_REVEAL = "account-token"  # nosec B105  # the name of a reveal slot, not a token
SIGN_IN_AGAIN_MESSAGE = lazy_gettext("Creating a token needs a sign-in from the last 10 minutes: sign in again first.")
# The token service's refusals of a form's field (gateway.identity.tokens), as the page shows them.
TOKEN_PROBLEMS = {
    "at most 100 characters": lazy_gettext("At most 100 characters."),
    "must be between 1 and 3650": lazy_gettext("Must be between 1 and 3650."),
}


def _actor() -> dict[str, object]:
    user = me()
    return {"id": user.id, "name": user.username}


def render_account(
    password_errors: dict[str, str] | None = None,
    token_errors: dict[str, str] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> tuple[str, int, dict[str, str]]:
    page = render_template(
        "account.html",
        tokens=tokens.tokens_of(me()),
        password_errors=password_errors or {},
        token_errors=token_errors or {},
        # What was typed in the new-token form, kept when it comes back with an error.
        token_form=(
            {"name": request.form.get("name", ""), "expires": request.form.get("expires", "90")} if token_errors else {}
        ),
        new_token=reveal.take(TOKEN_REVEAL),
        expiry_choices=EXPIRY_CHOICES,
        token_confirmation=oidc_views.confirmation_for_tokens(me()),
        signed_in_recently=oidc_views.signed_in_recently(),
        sign_in_again_url=oidc_views.sign_in_again_url(url_for("web.account")),
    )
    return page, status, headers or {}


@bp.route("/account")
def account() -> tuple[str, int, dict[str, str]]:
    return render_account()


# Field names and messages, not secrets (ruff's S105/S106 read "password" as a credential).
# ruff: noqa: S105
CURRENT = "current_password"


def password_change_errors(current: str, new: str, confirm: str) -> dict[str, str]:
    """What is wrong with the new password fields (the current password is checked by ``service.confirm_password``)."""
    errors: dict[str, str] = {}
    if len(new) < MIN_PASSWORD_LENGTH:
        errors["new_password"] = _("The new password must be at least %(count)s characters.", count=MIN_PASSWORD_LENGTH)
    elif len(new) > MAX_PASSWORD_LENGTH:
        errors["new_password"] = _("The new password must be at most %(count)s characters.", count=MAX_PASSWORD_LENGTH)
    elif new != confirm:
        errors["confirm_password"] = _("The two new passwords are not the same.")
    elif new == current:
        errors["new_password"] = _("The new password must differ from the current one.")
    return errors


def _confirm_current(via: str) -> tuple[str, int, dict[str, str]] | None:
    """Check the current password typed in the form (``service.confirm_password``: counted like sign-in).

    None when it is right; else the message for the field, the status and
    headers (429 with ``Retry-After`` while the name is locked).
    """
    typed = request.form.get(CURRENT, "")
    confirmation = service.confirm_password(me(), typed, via=via)
    if confirmation.ok:
        return None
    if confirmation.locked_until is not None:
        retry = max(1, math.ceil((confirmation.locked_until - utcnow()).total_seconds()))
        return _(str(LOCKED_MESSAGE)), 429, {"Retry-After": str(retry)}
    if not typed:
        return _("Enter your current password."), 400, {}
    return _("This is not your current password."), 400, {}


@bp.route("/account/password", methods=["POST"])
@limiter.limit(login_limit, key_func=address_key, methods=["POST"])
@limiter.limit(login_limit, key_func=own_name_key, methods=["POST"])
def change_password() -> Response | tuple[str, int, dict[str, str]]:
    """Change my password; every session (this one included) and every API token of mine ends."""
    current = request.form.get(CURRENT, "")
    new = request.form.get("new_password", "")
    refused = _confirm_current("password_change")
    if refused is not None and refused[1] == 429:
        return render_account(password_errors={CURRENT: refused[0]}, status=429, headers=refused[2])
    errors = password_change_errors(current, new, request.form.get("confirm_password", ""))
    if refused is not None:
        errors[CURRENT] = refused[0]
    if errors:
        return render_account(password_errors=errors, status=400)
    try:
        accounts.change_own_password(me(), new, source_ip=client_address() or None, user_agent=_user_agent())
    except accounts.AccountError as exc:
        return render_account(password_errors={"new_password": on_page(exc.problem)}, status=400)
    flash(
        _(
            "Your password was changed: every session was signed out and your API tokens were revoked. "
            "Sign in with the new password."
        )
    )
    return redirect(url_for("auth.login"), 303)


def _user_agent() -> str | None:
    return request.headers.get("User-Agent")


@bp.route("/account/tokens", methods=["POST"])
@limiter.limit(login_limit, key_func=address_key, methods=["POST"])
@limiter.limit(login_limit, key_func=own_name_key, methods=["POST"])
def create_token() -> Response | tuple[str, int, dict[str, str]]:
    """Create an API token; the current password is asked for, so a session alone cannot mint one."""
    name = request.form.get("name", "").strip()
    expiry = request.form.get("expires", "90")
    if expiry not in EXPIRY_CHOICES:
        return render_account(token_errors={"expires": _("Choose how long the token stays valid.")}, status=400)
    if not name:
        return render_account(
            token_errors={"name": _("Give the token a name, so you can recognise it later.")}, status=400
        )
    confirmation = oidc_views.confirmation_for_tokens(me())
    if confirmation == "password":
        refused = _confirm_current("token_create")
        if refused is not None:
            message, status, headers = refused
            return render_account(token_errors={CURRENT: message}, status=status, headers=headers)
    elif confirmation == "recent_sign_in" and not oidc_views.signed_in_recently():
        return render_account(token_errors={"sign_in": str(SIGN_IN_AGAIN_MESSAGE)}, status=403)
    try:
        issued = tokens.create_token(
            me(), name=name, expires_days=EXPIRY_CHOICES[expiry], actor=_actor(),
            source_ip=client_address(), user_agent=_user_agent(),
        )  # fmt: skip
    except tokens.TokenError as exc:
        field, _sep, message = str(exc).partition(": ")
        field = "expires" if field == "expires_days" else field  # the service's name for the form's field
        shown = str(TOKEN_PROBLEMS.get(message, message.capitalize() + "."))
        return render_account(token_errors={field: shown}, status=400)
    reveal.stash(TOKEN_REVEAL, issued.secret)
    return redirect(url_for("web.account", _anchor="tokens-heading"), 303)


REVOKE_NOTE = lazy_gettext("This cannot be undone: anything using it stops working at once and needs a new token.")


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(token_id: int) -> Response | tuple[str, int]:
    """Revoke one of my tokens, after a confirmation (the page without JavaScript, a dialog with it)."""
    user = me()
    token = next((token for token in tokens.tokens_of(user) if token.id == token_id), None)
    if token is None:
        abort(404)
    if token.revoked_at is None and request.form.get("confirm") != "yes":
        page = render_template(
            "confirm.html",
            question=_("Really revoke your token %(name)s?", name=token.name or token.prefix),
            note=str(REVOKE_NOTE),
            button=_("Revoke token"),
            action=url_for("web.revoke_token", token_id=token_id),
            fields=[],
            cancel=url_for("web.account", _anchor=f"token-{token_id}"),
            admin=False,
        )
        return page, 200
    if tokens.revoke(token_id, actor=_actor(), owner=user, source_ip=client_address()):
        flash(_("The token was revoked; it no longer works."))
    else:
        flash(_("That token was already revoked."))
    return redirect(url_for("web.account", _anchor="tokens-heading"), 303)
