"""Sign-in and sign-out pages (the OIDC routes are in ``oidc_views``, on the same blueprint)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from gateway.identity import oidc, service, sessions
from gateway.identity.forms import LoginForm, LogoutForm
from gateway.identity.limits import address_key, login_limit, typed_name_key
from gateway.identity.redirects import safe_next
from gateway.platform.extensions import limiter

bp = Blueprint("auth", __name__)

INVALID_MESSAGE = "Invalid username or password."
LOCKED_MESSAGE = "Too many failed sign-in attempts for this account. Try again later."
PASSWORDS_OFF_MESSAGE = "Sign-in with a password is turned off here."
# Set in the cleared cookie when an OIDC session signs out: the next sign-in page offers the IdP's sign-out.
IDP_SIGNED_OUT = "idp_signed_out"


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
        "login.html", form=form or LoginForm(), next=target, error=error, password_form="local" in methods,
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
        return render_login(form, target=target)
    if "local" not in current_app.config["AUTH_METHODS"]:
        return render_login(form, target=target, error=PASSWORDS_OFF_MESSAGE, status=403)
    if not form.validate_on_submit():
        return render_login(form, target=target, status=400)
    result = service.attempt_login(form.username.data or "", form.password.data or "")
    if result.user is None:
        message = LOCKED_MESSAGE if result.failure is service.LoginFailure.LOCKED else INVALID_MESSAGE
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
    flash("You are signed out.")
    return redirect(url_for("auth.login"))
