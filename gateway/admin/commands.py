"""/admin/commands: the kill switch, each definition as loaded, and who can run it through which group.

The definition shown is the one this process loaded (argv or SQL, params,
limits, ``definition_sha256`` as recorded in run events). A name that only
grants still mention is shown as stale rather than answered with an error.
"""

from __future__ import annotations

import json
from typing import Any

from flask import abort, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response

from gateway.admin.blueprint import bp
from gateway.admin.groups import by_category, stale_grants
from gateway.admin.shared import audited, back_to, back_with_undo, confirm_page, confirmed
from gateway.catalogue import Command
from gateway.catalogue import switches as command_switches
from gateway.db.models import CommandGrant, CommandState, Group, GroupMember, User
from gateway.identity import groups as group_service
from gateway.platform.extensions import db

MAX_REASON = 500


def _grants_by_command() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for group, command in group_service.list_grants():
        out.setdefault(command, []).append(group)
    return out


def who_can_run(command: str) -> list[dict[str, Any]]:
    """Every user who may run ``command`` and through which group(s); admins through their role."""
    rows = db.session.execute(
        select(User.username, User.active, Group.name)
        .join(GroupMember, GroupMember.user_id == User.id)
        .join(Group, Group.id == GroupMember.group_id)
        .join(CommandGrant, CommandGrant.group_id == Group.id)
        .where(CommandGrant.command == command)
        .order_by(User.username, Group.name)
    )
    people: dict[str, dict[str, Any]] = {}
    for username, active, group in rows:
        entry = people.setdefault(username, {"username": username, "active": active, "via": [], "admin": False})
        entry["via"].append(group)
    for admin in db.session.scalars(select(User).where(User.is_admin.is_(True))):
        entry = people.setdefault(admin.username, {"username": admin.username, "active": admin.active, "via": []})
        entry["admin"] = True
    return sorted(people.values(), key=lambda entry: entry["username"])


def _whole(value: object) -> object:
    """A bound as written in the catalogue: ``min=1``, not the model's ``1.0``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def param_rules(command: Command | None) -> dict[str, str]:
    """Each parameter's rules as loaded (``required=true; pattern="..."``), leaving out unset ones."""
    if command is None:
        return {}
    out = {}
    for name, spec in command.params.items():
        rules = spec.model_dump(mode="json", exclude_none=True, exclude={"type"})
        shown = [
            f"{key}={json.dumps(_whole(value))}" for key, value in rules.items() if value is not False and value != ""
        ]
        out[name] = "; ".join(shown)
    return out


@bp.route("/commands")
def commands() -> str:
    catalogue = command_switches.current_catalogue()
    grants = group_service.list_grants()
    return render_template(
        "admin/commands.html",
        catalogue=catalogue,
        categories=by_category(catalogue.commands.values()),
        grants=_grants_by_command(),
        stale=stale_grants(grants, catalogue.commands),
        disabled=command_switches.disabled_commands(),
    )


@bp.route("/commands/<name:name>")
def command_detail(name: str) -> str:
    catalogue = command_switches.current_catalogue()
    command = catalogue.get(name)
    grants = _grants_by_command().get(name, [])
    if command is None and not grants:
        abort(404)
    return render_template(
        "admin/command.html",
        name=name,
        command=command,
        unavailable=catalogue.unavailable_reason(command) if command is not None else None,
        grants=grants,
        rules=param_rules(command),
        # A stale name runs for nobody; only the groups that still mention it are worth listing.
        people=[p for p in who_can_run(name) if command is not None or p["via"]],
        state=db.session.get(CommandState, name),
    )


def _switch(name: str, disabled: bool) -> Response | tuple[str, int]:
    if command_switches.current_catalogue().get(name) is None:
        abort(404)
    detail = request.form.get("back") == "detail"
    page, anchor = ("admin.command_detail", "switch") if detail else ("admin.commands", f"switch:{name}")
    values: dict[str, Any] = {"name": name} if detail else {}
    if disabled and name not in command_switches.disabled_commands() and not confirmed():
        return confirm_page(
            _("Really disable %(name)s?", name=name),
            _("Disable"),
            cancel=url_for(page, _anchor=anchor, **values),
            note=_("Nobody can start it until it is enabled again."),
            keep=("reason", "back"),
        )
    reason = request.form.get("reason", "").strip()[:MAX_REASON] or None
    changed = command_switches.set_disabled(name, disabled, reason=reason, **audited())
    if not changed:
        message = (
            _("%(name)s was already disabled.", name=name)
            if disabled
            else _("%(name)s was already enabled.", name=name)
        )
    elif disabled:
        return back_with_undo(
            page,
            _("%(name)s is disabled: nobody can start it until it is enabled again.", name=name),
            undo="admin.enable_command",
            undo_values={"name": name},
            undo_fields={"back": "detail"} if detail else {},
            undo_label=_("Undo: enable %(name)s again", name=name),
            anchor=anchor,
            **values,
        )
    else:
        message = _("%(name)s is enabled again.", name=name)
    return back_to(page, message, anchor=anchor, **values)


@bp.route("/commands/<name:name>/disable", methods=["POST"])
def disable_command(name: str) -> Response | tuple[str, int]:
    return _switch(name, True)


@bp.route("/commands/<name:name>/enable", methods=["POST"])
def enable_command(name: str) -> Response | tuple[str, int]:
    return _switch(name, False)
