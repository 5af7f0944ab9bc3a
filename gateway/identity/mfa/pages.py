"""The second sign-in step's pages, on the sign-in blueprint: /login/mfa and giving up on it.

Only a half-signed-in session reaches them (``gate.SECOND_STEP_ENDPOINTS``).
A code typed here draws on the same rate limits as a password typed at
/login (shared buckets, per address and per name), besides the name's lock.
"""

from __future__ import annotations

from flask import jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from gateway.db.units import write_transaction
from gateway.identity import sessions
from gateway.identity.forms import CodeForm, LogoutForm
from gateway.identity.limits import address_key, login_limit, name_key
from gateway.identity.mfa import factors, gate, passkeys, step
from gateway.identity.redirects import safe_next
from gateway.identity.views import bp, locked_message
from gateway.platform.extensions import limiter
from gateway.platform.phrases import N_, on_page

WRONG_CODE = N_("That code is not right, or it was used already.")
WRONG_PASSKEY = N_("That passkey was not accepted. Try again, or use a code.")
LOGIN_SCOPE = "auth.login"  # the buckets /login's limits count in: a code guessed here counts there too


def _pending_name_key() -> str:
    half = gate.half_signed_in()
    return name_key(half.user.username if half else "")


def _page(
    form: CodeForm, target: str, half: gate.HalfSignedIn, error: str | None = None, status: int = 200
) -> tuple[str, int]:
    st = factors.status(half.user.id)
    page = render_template("login_mfa.html", form=form, next=target, status=st, error=on_page(error))
    return page, status


@bp.route("/login/mfa", methods=["GET", "POST"])
@limiter.shared_limit(login_limit, LOGIN_SCOPE, key_func=address_key, methods=["POST"])
@limiter.shared_limit(login_limit, LOGIN_SCOPE, key_func=_pending_name_key, methods=["POST"])
def login_mfa() -> Response | tuple[str, int]:
    half = gate.half_signed_in()
    if half is None:  # the gate let it in a moment ago; it just expired
        return redirect(url_for("auth.login"))
    target = safe_next(request.values.get("next"))
    form = CodeForm()
    if request.method == "GET":
        return _page(form, target, half)
    if not form.validate_on_submit():
        return _page(form, target, half, status=400)
    result = step.verify_code(half.user, form.code.data or "")
    if result.failure is step.StepFailure.LOCKED:
        return _page(form, target, half, error=locked_message(half.user.username), status=401)
    if not result.ok:
        return _page(form, target, half, error=WRONG_CODE, status=401)
    return redirect(target)


@bp.route("/login/mfa/passkey/options", methods=["POST"])
def passkey_login_options() -> Response:
    """The challenge for ``navigator.credentials.get``, naming the half-signed-in user's passkeys."""
    half = gate.half_signed_in()
    if half is None or not passkeys.passkeys_of(half.user.id):
        response = jsonify(error={"code": "not_found", "message": "No passkey to use here.", "details": {}})
        response.status_code = 404
        return response
    return Response(passkeys.sign_in_options(half.user), mimetype="application/json")


@bp.route("/login/mfa/passkey", methods=["POST"])
@limiter.shared_limit(login_limit, LOGIN_SCOPE, key_func=address_key, methods=["POST"])
@limiter.shared_limit(login_limit, LOGIN_SCOPE, key_func=_pending_name_key, methods=["POST"])
def passkey_login() -> Response | tuple[str, int]:
    half = gate.half_signed_in()
    if half is None:
        return redirect(url_for("auth.login"))
    target = safe_next(request.form.get("next"))
    result = step.verify_passkey(half.user, request.form.get("credential", ""))
    if result.failure is step.StepFailure.LOCKED:
        return _page(CodeForm(formdata=None), target, half, error=locked_message(half.user.username), status=401)
    if not result.ok:
        return _page(CodeForm(formdata=None), target, half, error=WRONG_PASSKEY, status=401)
    return redirect(target)


@bp.route("/login/mfa/cancel", methods=["POST"])
def login_mfa_cancel() -> Response:
    """Give up the second step: the half-signed-in record ends."""
    if LogoutForm().validate_on_submit():
        with write_transaction():
            sessions.revoke_current()
    return redirect(url_for("auth.login"), 303)
