"""/admin/groups (create, delete, members, IdP group links) and /admin/permissions (the groups x commands matrix).

A matrix cell is a POST form of its own, so a click grants or revokes one
command for one group without JavaScript. Grants naming commands that left
the catalogue are listed as stale (revocable), never an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from flask import current_app, render_template, request
from werkzeug.wrappers import Response

from gateway.admin.blueprint import bp
from gateway.admin.shared import audited, back, problem_text
from gateway.catalogue import Command
from gateway.catalogue import switches as command_switches
from gateway.identity import accounts, idp_links
from gateway.identity import groups as group_service


@bp.route("/groups")
def groups() -> str:
    return render_template(
        "admin/groups.html",
        groups=group_service.list_groups(),
        usernames=[user.username for user in accounts.list_users()],
        idp_links=idp_links.links_by_group(),
        external_sign_in=any(method in current_app.config["AUTH_METHODS"] for method in ("oidc", "header")),
        groups_by_name=current_app.config["OIDC_GROUPS_BY_NAME"],
    )


@bp.route("/groups", methods=["POST"])
def create_group() -> Response:
    name = request.form.get("name", "")
    try:
        group = group_service.create_group(name, description=request.form.get("description", "")[:500], **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", problem_text(exc))
    return back("admin.groups", f"Group {group.name} created.")


@bp.route("/groups/<name:name>/delete", methods=["POST"])
def delete_group(name: str) -> Response:
    try:
        before = group_service.delete_group(name, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", problem_text(exc))
    return back(
        "admin.groups",
        f"Group {before['group']} deleted ({len(before['members'])} member(s), {len(before['grants'])} grant(s)).",
    )


@bp.route("/groups/<name:name>/members", methods=["POST"])
def add_member(name: str) -> Response:
    username = request.form.get("username", "")
    try:
        added = group_service.add_member(name, username, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", problem_text(exc))
    return back("admin.groups", f"Added {username} to {name}." if added else f"{username} is already in {name}.")


@bp.route("/groups/<name:name>/members/remove", methods=["POST"])
def remove_member(name: str) -> Response:
    username = request.form.get("username", "")
    try:
        removed = group_service.remove_member(name, username, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", problem_text(exc))
    return back("admin.groups", f"Removed {username} from {name}." if removed else f"{username} was not in {name}.")


# The form's field as the page labels it, for errors that name the field.
FIELD_LABELS = {"idp_group": "IdP group name", "group": "Group"}


def field_problem(exc: accounts.AccountError) -> str:
    """A service error as ``<field label>: <problem>.``, so the admin sees which input was wrong."""
    field, _, problem = str(exc).partition(": ")
    label = FIELD_LABELS.get(field)
    if not problem or label is None:
        return problem_text(exc)
    return f"{label}: {problem}{'' if problem.endswith('.') else '.'}"


@bp.route("/groups/<name:name>/idp-links", methods=["POST"])
def link_idp_group(name: str) -> Response:
    """Members of ``idp_group`` at the identity provider become members of this group at their next sign-in."""
    idp_group = request.form.get("idp_group", "")
    try:
        linked = idp_links.link(name, idp_group, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", field_problem(exc))
    shown = idp_group.strip()
    return back("admin.groups", f"Linked {shown} to {name}." if linked else f"{shown} was already linked to {name}.")


@bp.route("/groups/<name:name>/idp-links/remove", methods=["POST"])
def unlink_idp_group(name: str) -> Response:
    idp_group = request.form.get("idp_group", "")
    try:
        unlinked = idp_links.unlink(name, idp_group, **audited())
    except accounts.AccountError as exc:
        return back("admin.groups", field_problem(exc))
    shown = idp_group[: idp_links.MAX_IDP_GROUP_LENGTH]
    return back("admin.groups", f"Unlinked {shown} from {name}." if unlinked else f"{shown} was not linked to {name}.")


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


@bp.route("/permissions", methods=["POST"])
def set_permission() -> Response:
    group, command = request.form.get("group", ""), request.form.get("command", "")
    action = request.form.get("action")
    try:
        if action == "grant":
            known = command_switches.current_catalogue().commands
            changed = group_service.add_grant(group, command, known_commands=known, **audited())
            message = f"{group} may now run {command}." if changed else f"{group} could already run {command}."
        elif action == "revoke":
            changed = group_service.remove_grant(group, command, **audited())
            message = f"{group} may no longer run {command}." if changed else f"{group} could not run {command}."
        else:
            return back("admin.permissions", "Choose grant or revoke.")
    except accounts.AccountError as exc:
        return back("admin.permissions", problem_text(exc))
    return back("admin.permissions", message)
