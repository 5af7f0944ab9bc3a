"""/admin/groups (create, delete, members, IdP group links) and /admin/permissions (the groups x commands matrix).

A matrix cell is a POST form of its own, so a click grants or revokes one
command for one group without JavaScript. Grants naming commands that left
the catalogue are listed as stale (revocable), never an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from flask import current_app, render_template, request, url_for
from flask_babel import format_decimal as number
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from werkzeug.wrappers import Response

from gateway.admin import shared
from gateway.admin.blueprint import bp
from gateway.admin.shared import audited, back, problem_text
from gateway.catalogue import Command
from gateway.catalogue import switches as command_switches
from gateway.identity import accounts, idp_links
from gateway.identity import groups as group_service


def delete_note(members: int, grants: int) -> str:
    """What deleting a group takes with it (the confirmation's note, on the page and in the dialog)."""
    return str(
        _(
            "Its %(memberships)s, %(grants)s and linked IdP groups go with it. This cannot be undone: "
            "to get it back, create it again and add them one by one.",
            memberships=ngettext("%(count)s membership", "%(count)s memberships", members, count=number(members)),
            grants=ngettext("%(count)s grant", "%(count)s grants", grants, count=number(grants)),
        )
    )


bp.context_processor(lambda: {"delete_note": delete_note})


def render_groups(
    errors: dict[str, str] | None = None, form: dict[str, str] | None = None, status: int = 200
) -> tuple[str, int]:
    """The groups page; ``errors`` and ``form`` are keyed by the id of the field they belong to."""
    groups = group_service.list_groups()
    usernames = [user.username for user in accounts.list_users()]
    page = render_template(
        "admin/groups.html",
        groups=groups,
        # The member select offers only those not in the group yet.
        candidates={g.name: [u for u in usernames if u not in {m.user.username for m in g.members}] for g in groups},
        idp_links=idp_links.links_by_group(),
        external_sign_in=any(method in current_app.config["AUTH_METHODS"] for method in ("oidc", "header")),
        groups_by_name=current_app.config["OIDC_GROUPS_BY_NAME"],
        errors=errors or {},
        form=form or {},
    )
    return page, status


@bp.route("/groups")
def groups() -> tuple[str, int]:
    return render_groups()


@bp.route("/groups", methods=["POST"])
def create_group() -> Response | tuple[str, int]:
    name = request.form.get("name", "")
    description = request.form.get("description", "")
    form = {"group-name": name, "group-description": description}
    if len(description) > 500:
        too_long = _("The description must be at most %(count)s characters.", count=number(500))
        return render_groups({"group-description": too_long}, form, 400)
    try:
        group = group_service.create_group(name, description=description, **audited())
    except accounts.AccountError as exc:
        return render_groups({"group-name": problem_text(exc)}, form, 400)
    return shared.back_to("admin.groups", _("Group %(group)s created.", group=group.name), anchor=f"add-{group.name}")


@bp.route("/groups/<name:name>/delete", methods=["POST"])
def delete_group(name: str) -> Response | tuple[str, int]:
    group = group_service.find_group(name)
    if group is not None and not shared.confirmed():
        return shared.confirm_page(
            _("Really delete group %(group)s?", group=group.name),
            _("Delete group"),
            cancel=url_for("admin.groups", _anchor=f"delete:{group.name}"),
            note=delete_note(len(group.members), len(group.grants)),
        )
    try:
        before = group_service.delete_group(name, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", problem_text(exc))
    members, grants = len(before["members"]), len(before["grants"])
    return back(
        "admin.groups",
        _(
            "Group %(group)s deleted (%(members)s, %(grants)s).",
            group=before["group"],
            members=ngettext("%(count)s member", "%(count)s members", members, count=number(members)),
            grants=ngettext("%(count)s grant", "%(count)s grants", grants, count=number(grants)),
        ),
    )


@bp.route("/groups/<name:name>/members", methods=["POST"])
def add_member(name: str) -> Response | tuple[str, int]:
    username = request.form.get("username", "")
    field = f"add-{name}"
    if not username:
        return render_groups({field: _("Choose a user to add.")}, status=400)
    try:
        added = group_service.add_member(name, username, **audited())
    except accounts.AccountError as exc:
        if group_service.find_group(name) is None:
            return back("admin.groups", problem_text(exc))
        return render_groups({field: problem_text(exc)}, {field: username}, 400)
    values = {"user": username, "group": name}
    message = _("Added %(user)s to %(group)s.", **values) if added else _("%(user)s is already in %(group)s.", **values)
    return shared.back_to("admin.groups", message, anchor=field)


@bp.route("/groups/<name:name>/members/remove", methods=["POST"])
def remove_member(name: str) -> Response | tuple[str, int]:
    username = request.form.get("username", "")
    group = group_service.find_group(name)
    member = group is not None and any(m.user.username == username for m in group.members)
    if member and not shared.confirmed():
        return shared.confirm_page(
            _("Really remove %(user)s from %(group)s?", user=username, group=name),
            _("Remove"),
            cancel=url_for("admin.groups", _anchor=f"member:{name}:{username}"),
            note=_(
                "%(user)s can no longer run the commands granted to %(group)s (unless another group grants them).",
                user=username,
                group=name,
            ),
            keep=("username",),
        )
    try:
        removed = group_service.remove_member(name, username, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", problem_text(exc))
    if not removed:
        return shared.back_to(
            "admin.groups", _("%(user)s was not in %(group)s.", user=username, group=name), anchor=f"add-{name}"
        )
    return shared.back_with_undo(
        "admin.groups",
        _("Removed %(user)s from %(group)s.", user=username, group=name),
        undo="admin.add_member",
        undo_values={"name": name},
        undo_fields={"username": username},
        undo_label=_("Undo: add %(user)s to %(group)s again", user=username, group=name),
        anchor=f"add-{name}",
    )


# The form's field as the page labels it, for errors that name the field.
FIELD_LABELS = {"idp_group": _l("IdP group name"), "group": _l("Group")}


def field_problem(exc: accounts.AccountError) -> str:
    """A service error as ``<field label>: <problem>.``, so the admin sees which input was wrong."""
    label = FIELD_LABELS.get(exc.field)
    if label is None:
        return problem_text(exc)
    return str(_("%(field)s: %(problem)s", field=label, problem=shared.problem_on_page(exc.problem, sentence=False)))


@bp.route("/groups/<name:name>/idp-links", methods=["POST"])
def link_idp_group(name: str) -> Response:
    """Members of ``idp_group`` at the identity provider become members of this group at their next sign-in."""
    idp_group = request.form.get("idp_group", "")
    try:
        linked = idp_links.link(name, idp_group, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", field_problem(exc))
    shown = idp_group.strip()
    values = {"idp_group": shown, "group": name}
    message = (
        _("Linked %(idp_group)s to %(group)s.", **values)
        if linked
        else _("%(idp_group)s was already linked to %(group)s.", **values)
    )
    return back("admin.groups", message)


@bp.route("/groups/<name:name>/idp-links/remove", methods=["POST"])
def unlink_idp_group(name: str) -> Response:
    idp_group = request.form.get("idp_group", "")
    try:
        unlinked = idp_links.unlink(name, idp_group, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", field_problem(exc))
    shown = idp_group[: idp_links.MAX_IDP_GROUP_LENGTH]
    values = {"idp_group": shown, "group": name}
    message = (
        _("Unlinked %(idp_group)s from %(group)s.", **values)
        if unlinked
        else _("%(idp_group)s was not linked to %(group)s.", **values)
    )
    return back("admin.groups", message)


def by_category(commands: Iterable[Command]) -> list[tuple[str, list[Command]]]:
    ordered = sorted(commands, key=lambda c: (c.category.lower(), c.name))
    return [(category, list(items)) for category, items in groupby(ordered, key=lambda c: c.category)]


def stale_grants(grants: Iterable[tuple[str, str]], known: Any) -> list[tuple[str, str]]:
    """(group, command) grants whose command is not in the loaded catalogue."""
    return [(group, command) for group, command in grants if command not in known]


@bp.route("/permissions")
def permissions() -> str:
    catalogue = command_switches.current_catalogue()
    grants = group_service.list_grants()
    return render_template(
        "admin/permissions.html",
        groups=group_service.list_groups(),
        categories=by_category(catalogue.commands.values()),
        granted=set(grants),
        stale=stale_grants(grants, catalogue.commands),
        disabled=command_switches.disabled_commands(),
    )


def cell_id(group: str, command: str) -> str:
    """The id of a permission matrix cell's button (``:`` is in neither a group nor a command name)."""
    return f"grant:{group}:{command}"


@bp.route("/permissions", methods=["POST"])
def set_permission() -> Response | tuple[str, int]:
    group, command = request.form.get("group", ""), request.form.get("command", "")
    action = request.form.get("action")
    anchor = cell_id(group, command)
    known = command_switches.current_catalogue().commands
    try:
        if action == "grant":
            changed = group_service.add_grant(group, command, known_commands=known, **audited())
            values = {"group": group, "command": command}
            message = (
                _("%(group)s may now run %(command)s.", **values)
                if changed
                else _("%(group)s could already run %(command)s.", **values)
            )
        elif action == "revoke":
            if (group, command) in set(group_service.list_grants()) and not shared.confirmed():
                return shared.confirm_page(
                    _("Really revoke %(command)s from %(group)s?", command=command, group=group),
                    _("Revoke"),
                    cancel=url_for("admin.permissions", _anchor=anchor),
                    note=_(
                        "Members of %(group)s can no longer run %(command)s (unless another group grants it).",
                        group=group,
                        command=command,
                    ),
                    keep=("group", "command", "action"),
                )
            changed = group_service.remove_grant(group, command, **audited())
            if changed and command in known:
                return shared.back_with_undo(
                    "admin.permissions",
                    _("%(group)s may no longer run %(command)s.", group=group, command=command),
                    undo="admin.set_permission",
                    undo_fields={"group": group, "command": command, "action": "grant"},
                    undo_label=_("Undo: grant %(command)s to %(group)s again", command=command, group=group),
                    anchor=anchor,
                )
            values = {"group": group, "command": command}
            message = (
                _("%(group)s may no longer run %(command)s.", **values)
                if changed
                else _("%(group)s could not run %(command)s.", **values)
            )
        else:
            return back("admin.permissions", _("Choose grant or revoke."))
    except accounts.AccountError as exc:
        return back("admin.permissions", problem_text(exc))
    return shared.back_to("admin.permissions", message, anchor=anchor)
