"""/account/mfa: set up an authenticator app (TOTP), see and renew recovery codes, register/name/remove passkeys.

The QR code is drawn here (``segno``, inline SVG); nothing about the secret
leaves the gateway. New recovery codes are shown once, after a redirect
(``gateway.platform.reveal``). Renewing them asks for the current password,
counted like sign-in: a stolen session alone cannot mint codes that outlive it.
"""

from __future__ import annotations

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from gateway.identity import service
from gateway.identity.limits import address_key, login_limit, own_name_key
from gateway.identity.mfa import factors, passkeys, totp
from gateway.identity.views import LOCKED_MESSAGE
from gateway.platform import reveal
from gateway.platform.addresses import client_address
from gateway.platform.extensions import limiter
from gateway.web.blueprint import bp
from gateway.web.shared import me

RECOVERY_REVEAL = "mfa-recovery-codes"


def _fields() -> dict[str, str | None]:
    return {"source_ip": client_address() or None, "user_agent": request.headers.get("User-Agent")}


def render_mfa(errors: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    user = me()
    shown = reveal.take(RECOVERY_REVEAL)
    page = render_template(
        "account_mfa.html",
        can_enrol=factors.can_enrol(user),
        must_enrol=factors.must_enrol(user),
        status=factors.status(user.id),
        enrolment=totp.pending_enrolment(user) if factors.can_enrol(user) else None,
        recovery_codes=shown.split() if shown else [],
        passkeys=passkeys.passkeys_of(user.id),
        errors=errors or {},
    )
    return page, status


@bp.route("/account/mfa")
def account_mfa() -> tuple[str, int]:
    return render_mfa()


def _not_here() -> Response | None:
    """Accounts from an identity provider or a proxy get their second factor there, not here."""
    if factors.can_enrol(me()):
        return None
    flash(_("Your identity provider asks for your second factor; there is nothing to set up here."))
    return redirect(url_for("web.account_mfa"), 303)


@bp.route("/account/mfa/totp", methods=["POST"])
def mfa_totp_start() -> Response | tuple[str, int]:
    """Start (or start again) setting up an authenticator app: a new secret to scan and confirm."""
    refused = _not_here()
    if refused is not None:
        return refused
    try:
        totp.begin(me())
    except ValueError:
        return render_mfa({"code": _("An authenticator app is already set up.")}, status=409)
    return redirect(url_for("web.account_mfa", _anchor="totp-heading"), 303)


@bp.route("/account/mfa/totp/confirm", methods=["POST"])
def mfa_totp_confirm() -> Response | tuple[str, int]:
    """The code the app shows now proves it holds the secret; ten recovery codes follow, shown once."""
    refused = _not_here()
    if refused is not None:
        return refused
    enrolled = factors.confirm_totp(me(), request.form.get("code", ""), **_fields())
    if not enrolled.ok:
        return render_mfa(
            {"code": _("That code does not match. Check the app's clock and enter the current code.")}, 400
        )
    flash(_("Your authenticator app is set up: you will be asked for a code after your password."))
    return _show_codes(enrolled.recovery_codes)


def _show_codes(codes: list[str]) -> Response:
    if codes:
        reveal.stash(RECOVERY_REVEAL, " ".join(codes))
    return redirect(url_for("web.account_mfa", _anchor="recovery-heading"), 303)


@bp.route("/account/mfa/recovery-codes", methods=["POST"])
@limiter.limit(login_limit, key_func=address_key, methods=["POST"])
@limiter.limit(login_limit, key_func=own_name_key, methods=["POST"])
def mfa_recovery_codes() -> Response | tuple[str, int]:
    """Ten new recovery codes replace the old ones; the current password is asked for (counted like sign-in)."""
    user = me()
    if not factors.status(user.id).enrolled:
        return render_mfa({"recovery": _("Set up an authenticator app or a passkey first.")}, 400)
    confirmation = service.confirm_password(user, request.form.get("current_password", ""), via="recovery_codes")
    if confirmation.locked_until is not None:
        return render_mfa({"recovery": _(str(LOCKED_MESSAGE))}, 429)
    if not confirmation.ok:
        return render_mfa({"recovery": _("This is not your current password.")}, 400)
    return _show_codes(factors.new_recovery_codes(user, **_fields()))


@bp.route("/account/mfa/passkeys/options", methods=["POST"])
def passkey_register_options() -> Response:
    """The challenge for ``navigator.credentials.create`` (JSON; the page's script asks for it)."""
    if not factors.can_enrol(me()):
        response = jsonify(error={"code": "forbidden", "message": "Your identity provider asks for it.", "details": {}})
        response.status_code = 403
        return response
    return Response(passkeys.registration_options(me()), mimetype="application/json")


@bp.route("/account/mfa/passkeys", methods=["POST"])
def passkey_register() -> Response | tuple[str, int]:
    """Keep the passkey the browser just made (its answer to the challenge above), under the name typed."""
    refused = _not_here()
    if refused is not None:
        return refused
    try:
        codes = passkeys.register(me(), request.form.get("credential", ""), request.form.get("name", ""), **_fields())
    except passkeys.PasskeyError as exc:
        return render_mfa({"passkey": _(str(exc))}, 400)
    flash(_("Your passkey is registered: you can use it after your password."))
    return _show_codes(codes)


@bp.route("/account/mfa/passkeys/<int:passkey_id>/rename", methods=["POST"])
def passkey_rename(passkey_id: int) -> Response | tuple[str, int]:
    try:
        renamed = passkeys.rename(me(), passkey_id, request.form.get("name", ""))
    except passkeys.PasskeyError as exc:
        return render_mfa({"passkey": _(str(exc))}, 400)
    if not renamed:
        abort(404)
    flash(_("The passkey was renamed."))
    return redirect(url_for("web.account_mfa", _anchor="passkeys-heading"), 303)


@bp.route("/account/mfa/passkeys/<int:passkey_id>/remove", methods=["POST"])
def passkey_remove(passkey_id: int) -> Response:
    if not passkeys.remove(me(), passkey_id, **_fields()):
        abort(404)
    flash(_("The passkey was removed; it no longer signs you in."))
    return redirect(url_for("web.account_mfa", _anchor="passkeys-heading"), 303)
