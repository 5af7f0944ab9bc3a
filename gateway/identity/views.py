"""Sign-in and sign-out pages (the OIDC routes are in ``oidc_views``, on the same blueprint)."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response

from gateway.identity import oidc, service, sessions, throttle
from gateway.identity.forms import LoginForm, LogoutForm
from gateway.identity.limits import address_key, login_limit, typed_name_key
from gateway.identity.redirects import safe_next
from gateway.identity.usernames import login_name
from gateway.platform import errors
from gateway.platform.extensions import limiter
from gateway.platform.phrases import N_, on_page
from gateway.platform.timeutil import utcnow

bp = Blueprint("auth", __name__)

# English msgids (``phrases.N_``); pages show them in their language (``on_page``, or ``_()`` of the text).
INVALID_MESSAGE = N_("Invalid username or password.")
LOCKED_START = "Too many failed sign-in attempts for this account."  # then how long: see locked_message
LOCKED_MESSAGE = N_("Too many failed sign-in attempts for this account. Try again later.")
PASSWORDS_OFF_MESSAGE = N_("Sign-in with a password is turned off here.")
SESSION_ENDED_MESSAGE = N_("Your session ended; sign in again.")
SIGN_IN_FORM_EXPIRED = N_("The sign-in form expired; sign in again.")
# Set by the invite page once a password is chosen: the sign-in form then shows that name.
INVITED_NAME = "invited_name"
# Forms where signing in would not help: people without an account yet (invites) and the signed-out
# pages' language switch; the 400 page says to reload.
NO_SIGN_IN = frozenset({"auth.invite", "auth.invite_name", "i18n.set_language"})
# Set in the cleared cookie when an OIDC session signs out: the next sign-in page offers the IdP's sign-out.
IDP_SIGNED_OUT = "idp_signed_out"


def locked_message(username: str) -> str:
    """The lock's message with how long it lasts ("Try again in 4 minutes"), in the page's language.

    Unknown names lock alike."""
    until = throttle.locked_until(login_name(username))
    if until is None:  # ended a moment ago
        return str(_("Too many failed sign-in attempts for this account. Try again now."))
    minutes = max(1, math.ceil((until - utcnow()).total_seconds() / 60))
    if minutes >= 120:
        hours = math.ceil(minutes / 60)
        return str(
            ngettext(
                "Too many failed sign-in attempts for this account. Try again in %(num)d hour.",
                "Too many failed sign-in attempts for this account. Try again in %(num)d hours.",
                hours,
            )
        )
    wait = ngettext(
        "Too many failed sign-in attempts for this account. Try again in %(num)d minute.",
        "Too many failed sign-in attempts for this account. Try again in %(num)d minutes.",
        minutes,
    )
    return str(wait)


def render_login(
    form: LoginForm | None = None, *, target: str = "/", error: str | None = None, status: int = 200
) -> tuple[str, int]:
    """The sign-in page: the password form and the single sign-on button as ``AUTH_METHODS`` says."""
    config = current_app.config
    methods = config["AUTH_METHODS"]
    idp_logout_url = None
    if session.pop(IDP_SIGNED_OUT, False) and "oidc" in methods:
        idp_logout_url = oidc.client().end_session_url()
    page = render_template(
        "login.html", form=form or LoginForm(), next=target, error=on_page(error), password_form="local" in methods,
        oidc_name=config["OIDC_DISPLAY_NAME"] if "oidc" in methods else None, idp_logout_url=idp_logout_url,
    )  # fmt: skip
    return page, status


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, key_func=address_key, methods=["POST"])
@limiter.limit(login_limit, key_func=typed_name_key, methods=["POST"])
def login() -> Response | tuple[str, int]:
    target = safe_next(request.values.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(target)
    form = LoginForm()
    if request.method == "GET":
        invited = session.pop(INVITED_NAME, None)
        if isinstance(invited, str) and not form.username.data:
            form.username.data = invited
        return render_login(form, target=target)
    if "local" not in current_app.config["AUTH_METHODS"]:
        return render_login(form, target=target, error=PASSWORDS_OFF_MESSAGE, status=403)
    if not form.validate_on_submit():
        return render_login(form, target=target, status=400)
    result = service.attempt_login(form.username.data or "", form.password.data or "")
    if result.user is None:
        locked = result.failure is service.LoginFailure.LOCKED
        message = locked_message(form.username.data or "") if locked else INVALID_MESSAGE
        return render_login(form, target=target, error=message, status=401)
    if result.mfa_pending:
        return redirect(url_for("auth.login_mfa", next=target))
    return redirect(target)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """End this browser's session; after an OIDC session the sign-in page offers the IdP's own sign-out."""
    form = LogoutForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        record = sessions.current_record()
        was_oidc = record is not None and record.method == "oidc"
        service.logout(current_user._get_current_object())
        if was_oidc:
            session[IDP_SIGNED_OUT] = True
    flash(_("You are signed out."))
    return redirect(url_for("auth.login"))


def _page_of_the_form() -> str:
    """Where the refused form was: a Referer on this site (``PUBLIC_BASE_URL``'s host), else the home page.

    The Host header is never consulted: it is the caller's to choose.
    """
    if request.endpoint == "auth.login":
        return safe_next(request.form.get("next"))
    parts = urlsplit(request.headers.get("Referer", ""))
    ours = urlsplit(current_app.config["PUBLIC_BASE_URL"]).netloc
    if parts.netloc != ours or parts.scheme not in ("http", "https"):
        return "/"
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


def is_form_post() -> bool:
    """A browser's form submission (not the API, not a script's fetch carrying the CSRF header)."""
    return (
        request.method == "POST"
        and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")
        and "X-CSRFToken" not in request.headers
        and not errors.wants_json()
    )


def sign_in_again() -> Response:
    """A form sent by someone no longer signed in: to sign-in, saying why, then back to the form's page."""
    flash(on_page(SIGN_IN_FORM_EXPIRED if request.endpoint == "auth.login" else SESSION_ENDED_MESSAGE))
    return redirect(url_for("auth.login", next=_page_of_the_form()))


def session_ended(exc: CSRFError) -> Response:
    """A form sent with a missing or bad CSRF token.

    Signed out (the session, and its token, ended): the sign-in page says so and returns to the
    form's page after, instead of a bare 400. Signed in still, the token is forged or from an
    older session: the 400 page. A script's request (API, fetch with the CSRF header) and the
    invite forms (their users have no account to sign in to yet) keep the 400 too. Nothing the
    form asked for is done in any case.
    """
    if current_user.is_authenticated or not is_form_post() or request.endpoint in NO_SIGN_IN:
        return errors.handle_http(exc)
    return sign_in_again()
