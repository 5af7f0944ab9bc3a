"""/admin/users: create, disable/enable, unlock, reset password, make or revoke admin.

A generated password and an invite link go through post/redirect/get: each is
handed to ``gateway.platform.reveal`` and the users page shows it once (a refresh neither
submits the form again nor shows the secret again; it is never in a flash
message: the session cookie is signed, not encrypted). The guard rails (last active admin, not yourself) live in
``gateway.identity.accounts`` so the CLI obeys them too.
"""

from __future__ import annotations

import json
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from werkzeug.wrappers import Response

from gateway.admin.blueprint import bp
from gateway.admin.shared import (
    audited,
    back,
    back_to,
    back_with_undo,
    confirm_page,
    confirmed,
    problem_on_page,
    problem_text,
    take_undo,
)
from gateway.db.models import Group, GroupMember, LoginThrottle, User
from gateway.identity import accounts, invites
from gateway.identity.invite import invite_url
from gateway.identity.passwords import generate_password, password_problem
from gateway.identity.usernames import normalise_username, username_problem
from gateway.platform import reveal
from gateway.platform.extensions import db
from gateway.platform.phrases import N_
from gateway.platform.timeutil import as_utc, utcnow


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _locks() -> dict[str, LoginThrottle]:
    """Real users' failed sign-ins or running locks (a spray of unknown names is not read)."""
    now = utcnow()
    rows = db.session.scalars(select(LoginThrottle).where(LoginThrottle.username.in_(select(User.username))))
    return {row.username: row for row in rows if row.failures or (row.locked_until and row.locked_until > now)}


def _groups_by_user() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    rows = db.session.execute(
        select(GroupMember.user_id, Group.name).join(Group, Group.id == GroupMember.group_id).order_by(Group.name)
    )
    for user_id, name in rows:
        out.setdefault(user_id, []).append(name)
    return out


# How each account signs in, as the users page says it.
SOURCE_NAMES = {
    "local": _l("local (password)"),
    "oidc": _l("oidc (single sign-on)"),
    "header": _l("header (sign-in proxy)"),
}


bp.context_processor(lambda: {"take_undo": take_undo})


def render_users(
    *,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    context = {
        "users": accounts.list_users(),
        "invites": invites.pending(),
        "invite_hours": int(invites.INVITE_TTL.total_seconds() // 3600),
        "locks": _locks(),
        "groups_by_user": _groups_by_user(),
        "now": utcnow(),
        "error": error,
        "errors": errors or {},
        "form": form or {},
        "source_names": SOURCE_NAMES,
    }
    # Taken last: a one-time secret is consumed only once nothing else on the page can still fail.
    page = render_template(
        "admin/users.html", new_invite=_shown(INVITE_REVEAL), new_password=_shown(GENERATED_REVEAL), **context
    )
    return page, status


@bp.route("/")
def index() -> Response:
    return back("admin.users")


@bp.route("/users")
def users() -> tuple[str, int]:
    return render_users()


INVITE_REVEAL = "admin-invite"


def _show_once(kind: str, secret: dict[str, str]) -> Response:
    """Post/redirect/get: the users page shows ``secret`` once; a refresh neither resubmits nor shows it again."""
    reveal.stash(kind, json.dumps(secret))
    return redirect(url_for("admin.users"), 303)


def _shown(kind: str) -> dict[str, Any] | None:
    held = reveal.take(kind)
    return json.loads(held) if held else None


def _show_invite_once(username: str, issued: invites.IssuedInvite) -> Response:
    link = {"user": username, "url": invite_url(issued.token), "expires": as_utc(issued.expires_at).isoformat()}
    return _show_once(INVITE_REVEAL, link)


GENERATED_REVEAL = "admin-generated"


def _show_password_once(username: str, password: str) -> Response:
    return _show_once(GENERATED_REVEAL, {"user": username, "password": password})


# The new-user form's fields, for errors shown next to each of them.
MODES = ("generate", "invite", "set")


def new_user_errors(username: str, mode: str, password: str, again: str) -> dict[str, str]:
    """Everything wrong with the new-user form at once (the service checks again when it writes)."""
    errors: dict[str, str] = {}
    problem = username_problem(normalise_username(username))
    if problem:
        errors["username"] = problem_on_page(problem)
    elif accounts.find_user(username) is not None:
        errors["username"] = problem_on_page(N_("%(name)s already exists", name=repr(normalise_username(username))))
    if mode not in MODES:
        errors["password_mode"] = _("Choose how the first password is set.")
    elif mode == "set":
        problem = password_problem(password)
        if problem:
            errors["password"] = _("The password %(problem)s", problem=problem_on_page(problem, sentence=False))
        elif password != again:
            errors["password_confirm"] = _("The two passwords are not the same.")
    return errors


@bp.route("/users", methods=["POST"])
def create_user() -> Response | tuple[str, int]:
    username = request.form.get("username", "")
    make_admin = request.form.get("is_admin") == "on"
    mode = request.form.get("password_mode", "generate")
    form = {"username": username, "is_admin": make_admin, "password_mode": mode}
    typed = request.form.get("password", "")
    errors = new_user_errors(username, mode, typed, request.form.get("password_confirm", ""))
    if errors:
        return render_users(errors=errors, form=form, status=400)
    try:
        if mode == "invite":
            user, issued = accounts.create_invited_user(username, is_admin=make_admin, **audited())
            return _show_invite_once(user.username, issued)
        password = generate_password() if mode == "generate" else typed
        user = accounts.create_user(username, password, is_admin=make_admin, **audited())
    except accounts.AccountError as exc:
        return render_users(
            errors={exc.field if exc.field == "password" else "username": problem_text(exc)}, form=form, status=400
        )
    if mode == "generate":
        return _show_password_once(user.username, password)
    return back_to("admin.users", _("%(name)s is created.", name=user.username), anchor=f"user-{user.id}")


def _change(user_id: int, change: str) -> Response | tuple[str, int]:
    user = _user_or_404(user_id)
    name = user.username
    anchor = f"user-{user.id}-{'active' if change in ('disable', 'enable') else 'admin'}"
    try:
        if change == "disable":
            if not confirmed():
                return confirm_page(
                    _("Really disable %(name)s?", name=name),
                    _("Disable"),
                    cancel=url_for("admin.users", _anchor=anchor),
                    note=_(
                        "Their sessions end and their API tokens are revoked. You can enable them again; "
                        "that brings back neither the sessions nor the tokens."
                    ),
                )
            accounts.set_active(user, False, **audited())
            return back_with_undo(
                "admin.users",
                _("%(name)s is disabled; their sessions ended and their API tokens were revoked.", name=name),
                undo="admin.enable_user",
                undo_values={"user_id": user.id},
                undo_label=_("Undo: enable %(name)s again", name=name),
                anchor=anchor,
            )
        if change == "enable":
            accounts.set_active(user, True, **audited())
            message = _("%(name)s is enabled again.", name=name)
        elif change == "make-admin":
            accounts.set_admin(user, True, **audited())
            message = _("%(name)s is now an administrator.", name=name)
        else:
            accounts.set_admin(user, False, **audited())
            message = _("%(name)s is no longer an administrator.", name=name)
    except accounts.AccountError as exc:
        return back_to("admin.users", problem_text(exc), anchor=anchor)
    return back_to("admin.users", message, anchor=anchor)


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
def disable_user(user_id: int) -> Response | tuple[str, int]:
    return _change(user_id, "disable")


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
def enable_user(user_id: int) -> Response | tuple[str, int]:
    return _change(user_id, "enable")


@bp.route("/users/<int:user_id>/make-admin", methods=["POST"])
def make_admin(user_id: int) -> Response | tuple[str, int]:
    return _change(user_id, "make-admin")


@bp.route("/users/<int:user_id>/revoke-admin", methods=["POST"])
def revoke_admin(user_id: int) -> Response | tuple[str, int]:
    return _change(user_id, "revoke-admin")


@bp.route("/users/<int:user_id>/unlock", methods=["POST"])
def unlock_user(user_id: int) -> Response:
    user = _user_or_404(user_id)
    had_lock = accounts.unlock(user.username, **audited())
    message = (
        _("%(name)s is unlocked.", name=user.username)
        if had_lock
        else _("%(name)s was not locked.", name=user.username)
    )
    return back_to("admin.users", message, anchor=f"user-{user.id}")


@bp.route("/users/<int:user_id>/reset-password", methods=["POST"])
def reset_password(user_id: int) -> Response | tuple[str, int]:
    user = _user_or_404(user_id)
    password = generate_password()
    try:
        accounts.reset_password(user, password, **audited())
    except accounts.AccountError as exc:
        return render_users(error=problem_text(exc), status=400)
    return _show_password_once(user.username, password)


@bp.route("/users/<int:user_id>/invite", methods=["POST"])
def invite_user(user_id: int) -> Response:
    """Reset by invite link: the old password stops working at once; the user chooses a new one."""
    user = _user_or_404(user_id)
    try:
        issued = accounts.reset_by_invite(user, **audited())
    except accounts.AccountError as exc:
        return back("admin.users", problem_text(exc))
    return _show_invite_once(user.username, issued)
