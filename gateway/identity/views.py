"""Sign-in and sign-out pages."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from gateway.identity import service
from gateway.identity.forms import LoginForm, LogoutForm
from gateway.identity.redirects import safe_next
from gateway.identity.usernames import login_name
from gateway.platform.addresses import client_address
from gateway.platform.extensions import limiter

bp = Blueprint("auth", __name__)

INVALID_MESSAGE = "Invalid username or password."
LOCKED_MESSAGE = "Too many failed sign-in attempts for this account. Try again later."


def _login_limit() -> str:
    limit: str = current_app.config["LOGIN_RATE_LIMIT"]
    return limit


def _address_key() -> str:
    return "login-ip:" + client_address()


def _username_key() -> str:
    return "login-user:" + login_name(request.form.get("username", ""))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, key_func=_address_key, methods=["POST"])
@limiter.limit(_login_limit, key_func=_username_key, methods=["POST"])
def login() -> Response | str | tuple[str, int]:
    target = safe_next(request.values.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(target)
    form = LoginForm()
    if request.method == "GET":
        return render_template("login.html", form=form, next=target)
    if not form.validate_on_submit():
        return render_template("login.html", form=form, next=target), 400
    result = service.attempt_login(form.username.data or "", form.password.data or "")
    if result.user is None:
        message = LOCKED_MESSAGE if result.failure is service.LoginFailure.LOCKED else INVALID_MESSAGE
        return render_template("login.html", form=form, next=target, error=message), 401
    if result.mfa_pending:
        return redirect(url_for("auth.login_mfa", next=target))
    return redirect(target)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    form = LogoutForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        service.logout(current_user._get_current_object())
    flash("You are signed out.")
    return redirect(url_for("auth.login"))
