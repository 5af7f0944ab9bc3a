"""Links from an identity provider's group names to gateway groups, kept by admins.

An IdP names groups however it likes (``/ops/admins`` in Keycloak, an object id in
Entra), so a link stores the IdP's string as given, up to 256 characters. With
``OIDC_GROUPS_BY_NAME`` on, an IdP group also maps to the gateway group of the same
name; README tells operators to turn that off where users can create IdP groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select

from gateway import audit
from gateway.db.models import Group, IdpGroupLink
from gateway.db.units import rows_matched, write_transaction
from gateway.identity.accounts import AccountError
from gateway.identity.groups import get_group
from gateway.platform.extensions import db
from gateway.platform.phrases import N_, Phrase

Actor = Mapping[str, Any] | None
MAX_IDP_GROUP_LENGTH = 256
# A groups claim longer than this is cut: nobody is in more groups, and a hostile IdP must not make us loop.
MAX_CLAIMED_GROUPS = 1000


def idp_group_problem(idp_group: str) -> Phrase | None:
    """Why a string cannot be linked (empty, too long, control characters), or None."""
    if not idp_group or len(idp_group) > MAX_IDP_GROUP_LENGTH:
        return N_("use 1-%(num)s characters", num=MAX_IDP_GROUP_LENGTH)
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in idp_group):
        return N_("must not contain control characters")
    return None


def link(group_name: str, idp_group: str, *, actor: Actor = None, **fields: Any) -> bool:
    """Map ``idp_group`` to the gateway group; False when the link already exists."""
    group = get_group(group_name)
    idp_group = idp_group.strip()
    problem = idp_group_problem(idp_group)
    if problem:
        raise AccountError("idp_group", problem)
    existing = db.session.scalar(
        select(IdpGroupLink).where(IdpGroupLink.group_id == group.id, IdpGroupLink.idp_group == idp_group)
    )
    if existing is not None:
        return False
    with write_transaction() as tx:
        tx.add(IdpGroupLink(group_id=group.id, idp_group=idp_group))
        audit.append(
            "admin.idp_group_linked", session=tx, actor=actor, outcome="ok",
            detail={"group": group.name, "idp_group": idp_group}, **fields,
        )  # fmt: skip
    return True


def unlink(group_name: str, idp_group: str, *, actor: Actor = None, **fields: Any) -> bool:
    group = get_group(group_name)
    with write_transaction() as tx:
        result = tx.execute(
            delete(IdpGroupLink).where(IdpGroupLink.group_id == group.id, IdpGroupLink.idp_group == idp_group)
        )
        if not rows_matched(result):
            return False
        audit.append(
            "admin.idp_group_unlinked", session=tx, actor=actor, outcome="ok",
            detail={"group": group.name, "idp_group": idp_group[:MAX_IDP_GROUP_LENGTH]}, **fields,
        )  # fmt: skip
    return True


def links_by_group() -> dict[str, list[str]]:
    """Every gateway group's linked IdP group names, for the admin page."""
    rows = db.session.execute(
        select(Group.name, IdpGroupLink.idp_group).join(IdpGroupLink.group).order_by(Group.name, IdpGroupLink.idp_group)
    )
    linked: dict[str, list[str]] = {}
    for group_name, idp_group in rows:
        linked.setdefault(group_name, []).append(idp_group)
    return linked


def claimed_groups(value: object) -> tuple[str, ...]:
    """The group names in a claim or header value: a list of strings or one string; anything else is no groups."""
    if isinstance(value, str):
        items: Iterable[object] = [value]
    elif isinstance(value, list):
        items = value[:MAX_CLAIMED_GROUPS]
    else:
        return ()
    return tuple(dict.fromkeys(item for item in items if isinstance(item, str) and not idp_group_problem(item)))


def gateway_groups_for(idp_groups: Iterable[str], *, by_name: bool) -> dict[int, str]:
    """The gateway groups (id -> name) the IdP groups map to, by an admin's link or, with ``by_name``, by name."""
    wanted = list(dict.fromkeys(idp_groups))
    if not wanted:
        return {}
    mapped: dict[int, str] = {}
    for chunk in (wanted[i : i + 500] for i in range(0, len(wanted), 500)):
        rows = db.session.execute(
            select(Group.id, Group.name).join(IdpGroupLink.group).where(IdpGroupLink.idp_group.in_(chunk))
        )
        mapped.update({group_id: name for group_id, name in rows})
        if by_name:
            # Exactly the same name: gateway group names are lower case, so "Ops" at the IdP is not "ops".
            same_names = [name for name in chunk if len(name) <= 100]
            rows = db.session.execute(select(Group.id, Group.name).where(Group.name.in_(same_names)))
            mapped.update({group_id: name for group_id, name in rows})
    return mapped
