"""Groups, memberships and command grants, each change audited in the same commit.

Grants name catalogue commands; a grant whose command has vanished from the
catalogue is kept (and shown as stale) rather than deleted behind the admin's back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select

from gateway import audit
from gateway.db.models import CommandGrant, Group, GroupMember
from gateway.db.units import rows_matched, write_transaction
from gateway.identity.accounts import AccountError, get_user
from gateway.platform.extensions import db
from gateway.platform.identifiers import is_name
from gateway.platform.phrases import N_

Actor = Mapping[str, Any] | None
GROUP_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def find_group(name: str) -> Group | None:
    """The group ``name`` means; a value that is not a name (``gateway.platform.identifiers``) means none."""
    name = name.strip().lower()
    if not is_name(name):
        return None
    return db.session.scalar(select(Group).where(Group.name == name))


def get_group(name: str) -> Group:
    group = find_group(name)
    if group is None:
        raise AccountError("group", N_("no group %(name)s", name=repr(name)))
    return group


def create_group(name: str, *, description: str = "", actor: Actor = None, **fields: Any) -> Group:
    name = name.strip().lower()
    if not GROUP_NAME.match(name):
        raise AccountError("group", N_("use 1-100 of a-z, 0-9, '.', '_' or '-'"))
    if find_group(name) is not None:
        raise AccountError("group", N_("%(name)s already exists", name=repr(name)))
    with write_transaction() as tx:
        group = Group(name=name, description=description)
        tx.add(group)
        tx.flush()
        audit.append("admin.group_created", session=tx, actor=actor, outcome="ok", detail={"group": name}, **fields)
    return group


def add_member(group_name: str, username: str, *, actor: Actor = None, **fields: Any) -> bool:
    group, user = get_group(group_name), get_user(username)
    existing = db.session.get(GroupMember, (group.id, user.id))
    if existing is not None and existing.origin == "manual":
        return False
    with write_transaction() as tx:
        if existing is not None:
            # An admin adding what the IdP's groups brought makes it theirs: kept when the claim drops it.
            existing.origin = "manual"
        else:
            tx.add(GroupMember(group_id=group.id, user_id=user.id, origin="manual"))
        audit.append(
            "admin.group_member_added", session=tx, actor=actor, outcome="ok",
            detail={"group": group.name, "user": user.username}, **fields,
        )  # fmt: skip
    return True


def remove_member(group_name: str, username: str, *, actor: Actor = None, **fields: Any) -> bool:
    group, user = get_group(group_name), get_user(username)
    with write_transaction() as tx:
        result = tx.execute(delete(GroupMember).where(GroupMember.group_id == group.id, GroupMember.user_id == user.id))
        if not rows_matched(result):
            return False
        audit.append(
            "admin.group_member_removed", session=tx, actor=actor, outcome="ok",
            detail={"group": group.name, "user": user.username}, **fields,
        )  # fmt: skip
    return True


def add_grant(group_name: str, command: str, *, actor: Actor = None, known_commands: Any = None, **fields: Any) -> bool:
    group = get_group(group_name)
    if not is_name(command) or (known_commands is not None and command not in known_commands):
        raise AccountError("command", N_("no command %(name)s in the catalogue", name=repr(command)))
    existing = db.session.scalar(
        select(CommandGrant).where(CommandGrant.group_id == group.id, CommandGrant.command == command)
    )
    if existing is not None:
        return False
    with write_transaction() as tx:
        tx.add(CommandGrant(group_id=group.id, command=command))
        audit.append(
            "admin.grant_added", session=tx, actor=actor, command=command, outcome="ok",
            detail={"group": group.name}, **fields,
        )  # fmt: skip
    return True


def remove_grant(group_name: str, command: str, *, actor: Actor = None, **fields: Any) -> bool:
    group = get_group(group_name)
    if not is_name(command):
        return False  # no grant can name it
    with write_transaction() as tx:
        result = tx.execute(
            delete(CommandGrant).where(CommandGrant.group_id == group.id, CommandGrant.command == command)
        )
        if not rows_matched(result):
            return False
        audit.append(
            "admin.grant_removed", session=tx, actor=actor, command=command, outcome="ok",
            detail={"group": group.name}, **fields,
        )  # fmt: skip
    return True


def delete_group(name: str, *, actor: Actor = None, **fields: Any) -> dict[str, Any]:
    """Delete a group with its memberships and grants; the event records what went with it."""
    group = get_group(name)
    members = sorted(m.user.username for m in group.members)
    grants = sorted(g.command for g in group.grants)
    before = {"group": group.name, "description": group.description, "members": members, "grants": grants}
    group_id = group.id
    with write_transaction() as tx:
        tx.execute(delete(GroupMember).where(GroupMember.group_id == group_id))
        tx.execute(delete(CommandGrant).where(CommandGrant.group_id == group_id))
        result = tx.execute(delete(Group).where(Group.id == group_id))
        if not rows_matched(result):
            raise AccountError("group", N_("no group %(name)s", name=repr(name)))
        audit.append("admin.group_deleted", session=tx, actor=actor, outcome="ok", detail={"before": before}, **fields)
    db.session.expire_all()
    return before


def list_groups() -> list[Group]:
    return list(db.session.scalars(select(Group).order_by(Group.name)))


def list_grants() -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(Group.name, CommandGrant.command)
        .join(CommandGrant, CommandGrant.group_id == Group.id)
        .order_by(Group.name, CommandGrant.command)
    )
    return [(row[0], row[1]) for row in rows]
