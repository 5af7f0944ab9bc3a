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
from werkzeug.wrappers import Response

from gateway.identity import accounts, invites
from gateway.identity.limits import address_key, login_limit
from gateway.identity.views import INVITED_NAME, bp
from gateway.platform.addresses import client_address
from gateway.platform.extensions import limiter
from gateway.platform.urls import external_url

ASK = "ask an administrator for a new one."
LINK_PROBLEMS = {
    invites.InviteProblem.INVALID: f"This invite link is not valid. Check that you copied all of it, or {ASK}",
    invites.InviteProblem.USED: f"This invite link was already used. Sign in with the password you chose, or {ASK}",
    invites.InviteProblem.EXPIRED: f"This invite link has expired: {ASK}",
    invites.InviteProblem.REVOKED: (
        "This invite link was replaced by a newer link or a password an administrator set. Use the newest one."
    ),
    invites.InviteProblem.DISABLED: "This account is disabled. Ask an administrator.",
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
        response = jsonify(error=LINK_PROBLEMS[exc.problem])
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
        return _render({"password_confirm": "The two passwords are not the same."}, 400, code)  # nosec B105  # a message
    try:
        user = accounts.accept_invite(code, password, **_fields())
    except invites.InviteError as exc:
        return _render({"code": LINK_PROBLEMS[exc.problem]}, 400)
    except ValueError as exc:
        return _render({"password": f"The password {str(exc).split(': ', 1)[-1]}."}, 400, code)
    flash(f"Your password is set. Sign in as {user.username}.")
    session[INVITED_NAME] = user.username  # the sign-in form shows it
    return redirect(url_for("auth.login"), 303)
