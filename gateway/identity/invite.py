"""The invite page: a user an admin created (or reset) chooses their password through a one-time link.

The link is ``/invite#<token>``: the token rides in the URL fragment, which
browsers never send, so it stays out of access logs, proxies and Referer
headers. A small script copies it into the form (the page also takes it
pasted by hand, for a browser without JavaScript); it reaches the server only
in the POST body. No sign-in is needed, the network allowlist still applies,
and the POST is rate-limited per address like sign-in.

``/invite/name`` answers whose password the link sets, so the page can say so:
the script POSTs the fragment's token (CSRF header), the answer is the
username and nothing else, the lookup counts in the invite form's rate-limit
bucket, and a refused link is audited as the form would audit it. After the
password is set the sign-in form shows that username.
"""

from __future__ import annotations

from flask import flash, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from gateway.identity import accounts, invites
from gateway.identity.limits import address_key, login_limit
from gateway.identity.passwords import password_problem_text
from gateway.identity.views import INVITED_NAME, bp
from gateway.platform.addresses import client_address
from gateway.platform.extensions import limiter
from gateway.platform.phrases import N_, on_page
from gateway.platform.urls import external_url

# English msgids (``phrases.N_``), shown in the page's language (``on_page``).
LINK_PROBLEMS = {
    invites.InviteProblem.INVALID: N_(
        "This invite link is not valid. Check that you copied all of it, or ask an administrator for a new one."
    ),
    invites.InviteProblem.USED: N_(
        "This invite link was already used. Sign in with the password you chose, or ask an administrator for a new one."
    ),
    invites.InviteProblem.EXPIRED: N_("This invite link has expired: ask an administrator for a new one."),
    invites.InviteProblem.REVOKED: N_(
        "This invite link was replaced by a newer link or a password an administrator set. Use the newest one."
    ),
    invites.InviteProblem.DISABLED: N_("This account is disabled. Ask an administrator."),
}


def invite_url(token: str) -> str:
    """The link an admin hands over: absolute (``PUBLIC_BASE_URL``, never the request's Host), token in the fragment."""
    return external_url("auth.invite") + "#" + token


def _render(errors: dict[str, str] | None = None, status: int = 200, code: str = "") -> tuple[str, int]:
    return render_template("invite.html", errors=errors or {}, code=code), status


INVITE_SCOPE = "auth.invite"  # the invite form's rate-limit buckets, shared by the name lookup


def _fields() -> dict[str, str | None]:
    return {"source_ip": client_address() or None, "user_agent": request.headers.get("User-Agent")}


@bp.route("/invite/name", methods=["POST"])
@limiter.shared_limit(login_limit, INVITE_SCOPE, key_func=address_key, methods=["POST"])
def invite_name() -> Response:
    """The username an invite link sets the password for (JSON ``{"username"}``); a refused link is audited."""
    code = request.form.get("code", "").strip()
    try:
        user = invites.check(code)
    except invites.InviteError as exc:
        invites.record_failure(exc, **_fields())
        response = jsonify(error=on_page(LINK_PROBLEMS[exc.problem]))  # for the page's script
        response.status_code = 400
        return response
    return jsonify(username=user.username)


@bp.route("/invite", methods=["GET", "POST"])
@limiter.shared_limit(login_limit, INVITE_SCOPE, key_func=address_key, methods=["POST"])
def invite() -> Response | tuple[str, int]:
    if request.method == "GET":
        return _render()
    code = request.form.get("code", "").strip()
    password = request.form.get("password", "")
    if password != request.form.get("password_confirm", ""):
        return _render({"password_confirm": _("The two passwords are not the same.")}, 400, code)  # nosec B105  # a message
    try:
        user = accounts.accept_invite(code, password, **_fields())
    except invites.InviteError as exc:
        return _render({"code": on_page(LINK_PROBLEMS[exc.problem])}, 400)
    except ValueError:
        problem = password_problem_text(password) or _("This password cannot be used.")
        return _render({"password": problem}, 400, code)
    flash(_("Your password is set. Sign in as %(name)s.", name=user.username))
    session[INVITED_NAME] = user.username  # the sign-in form shows it
    return redirect(url_for("auth.login"), 303)
