"""The permission vocabulary, in one module: predicates paired with enforcers.

Views never decide who may do what; they ask here.  "May this user run this
command from this address now?" is answered by ``check_run``: admins may run
everything, staff what one of their groups is granted; a command's
``allowed_networks`` binds admins too.  Commands a user may not run are
invisible to them (404, same as a command that does not exist).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort
from flask_login import current_user
from sqlalchemy import bindparam, select

from gateway.catalogue import Catalogue, Command
from gateway.extensions import db
from gateway.models import CommandGrant, GroupMember
from gateway.netguard import address_allowed


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    outcome: str
    message: str


NOT_FOUND = Refusal(404, "not_found", "not_found", "No such command.")
NETWORK = Refusal(403, "forbidden", "denied_network", "This command cannot be run from your network address.")


def is_admin(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active and user.is_admin)


def require_admin() -> None:
    """Staff and anonymous callers get 404 on admin routes: nothing says the route exists."""
    if not is_admin(current_user):
        abort(404)


# Built once: a statement object reused with parameters skips construction and cache-key work
# on every request (this is asked on each run and each API call by staff).
_GRANTED = (
    select(CommandGrant.command)
    .join(GroupMember, GroupMember.group_id == CommandGrant.group_id)
    .where(GroupMember.user_id == bindparam("user_id"))
)


def granted_commands(user: Any) -> frozenset[str]:
    """Names granted to any group the user belongs to."""
    return frozenset(db.session.scalars(_GRANTED, {"user_id": user.id}))


def can_see(user: Any, command: Command | None) -> bool:
    if command is None or user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return is_admin(user) or command.name in granted_commands(user)


def visible_commands(user: Any, catalogue: Catalogue) -> list[Command]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    if is_admin(user):
        return list(catalogue.commands.values())
    granted = granted_commands(user)
    return [command for name, command in catalogue.commands.items() if name in granted]


def check_run(user: Any, command: Command | None, address: str) -> Refusal | None:
    """None when the user may run the command from ``address``; otherwise why not."""
    if command is None or not can_see(user, command):
        return NOT_FOUND
    networks = command.networks()
    if networks is not None and not address_allowed(address, networks):
        return NETWORK
    return None


def owns_run(user: Any, run: Any) -> bool:
    return run is not None and run.user_id is not None and run.user_id == getattr(user, "id", None)


def can_view_run(user: Any, run: Any) -> bool:
    """Owners and admins; and anyone who may run the command when the run is a shared cached result."""
    if run is None:
        return False
    if is_admin(user) or owns_run(user, run):
        return True
    if run.cache_key is None:
        return False
    from gateway.commands import current_catalogue

    return can_see(user, current_catalogue().get(run.command))


def sees_run_details(user: Any, run: Any) -> bool:
    """Who ran it, from where, with what: only for its owner and admins (cached results are shared)."""
    return is_admin(user) or owns_run(user, run)


def can_cancel_run(user: Any, run: Any) -> bool:
    return is_admin(user) or owns_run(user, run)
