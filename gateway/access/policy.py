"""The permission vocabulary, in one module: every "may this caller see or do this?" is decided here.

Views never decide who may do what; they ask here, with the caller's address,
and render the answer in their own shape (an HTML 404, the API's JSON error,
Flask-Shell2HTTP's ``{"error": ...}``).  The rules, the same on every surface
(web pages, CSV, API, long-poll, stream, Shell2HTTP, tiles, admin pages):

- **Commands** (``check_run`` / ``command_for``): admins may use every command,
  staff what one of their groups is granted.  A command's ``allowed_networks``
  binds admins too.  Using a command means seeing its form, schema and tile and
  starting it; a command the caller may not use from this address does not
  exist for them: 404, the same answer as an unknown name (the ledger records
  the real reason, ``denied_network`` or ``not_found``, for refused starts).
- **Runs** (``allows_run`` / ``run_for``): a run of a command whose
  ``allowed_networks`` exclude the caller's address does not exist for anyone
  there, owner and admins included (reading its output is using the command).
  Otherwise its owner and admins may view and cancel it; anyone who may use the
  command may view (never cancel) a shared cached result.  Every other run does
  not exist for the caller: 404.  Run lists apply the same rule (``listable_owner``,
  ``listed_runs``).
- **Administration** (``require_admin``): admin pages answer admins only.  The
  catalogue's definitions, grants and kill switch (/admin/commands) are not use
  of a command, so ``allowed_networks`` does not hide them from admins; the runs
  those pages list or cancel follow the run rule above.
- A signed-out or disabled caller may do nothing (the sign-in gate answers
  before any view; the rules repeat it so no surface depends on that).

- **Approvals** (``approves`` / ``decision_refusal``, ``awaiting_decision``): the approvers
  of a command that needs one are the active members of its approver groups, from
  inside its ``allowed_networks``; being an admin is not enough.  Nobody approves or
  denies their own request (admins included, whichever token or session they use);
  only the requester withdraws one.  An approver may view the runs of that command
  that went through approval (the request, the params as masked, who decided what,
  and the run once it started): deciding is reading what one decides on.
- **System principals** (``SystemPrincipal``: ``system:scheduler`` runs schedules,
  ``system:choices`` the sources of parameters' choices): not users.  The reviewed
  catalogue authorised them, so ``check_run`` lets them use any command of it (no grants,
  no ``allowed_networks``); their runs have no owner and are visible to everyone who may
  use the command, like shared results.

An ``address`` of None means "not over the network": the operator at the
host's CLI (and the system principals of DESIGN.md).  Request code always
passes the client address, which is a string (empty when unparseable, and then
no network admits it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from flask import abort
from flask_login import current_user
from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, false, or_, select, true

from gateway.access.netguard import address_allowed
from gateway.catalogue import Catalogue, Command
from gateway.catalogue.switches import current_catalogue
from gateway.db.approval_tables import ApprovalDecision, ApprovalRequest
from gateway.db.models import CommandGrant, Group, GroupMember, Run
from gateway.platform.extensions import db
from gateway.platform.identifiers import is_name, is_run_id
from gateway.platform.phrases import N_

RunAction = Literal["view", "cancel"]
Decision = Literal["approve", "deny", "withdraw"]
PENDING_APPROVAL = "pending_approval"


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    outcome: str
    message: str


NOT_FOUND = Refusal(404, "not_found", "not_found", N_("No such command."))
# Same answer as an unknown command: from outside its networks a command does not exist for the caller.
NETWORK = Refusal(404, "not_found", "denied_network", N_("No such command."))
NO_RUN = Refusal(404, "not_found", "not_found", N_("No such run."))
OWN_REQUEST = Refusal(403, "forbidden", "own_request", N_("Nobody may approve or deny their own request."))
NOT_APPROVER = Refusal(403, "forbidden", "not_approver", N_("You are not an approver of this command."))
NOT_REQUESTER = Refusal(403, "forbidden", "not_requester", N_("Only the requester may withdraw a request."))


class Denied(Exception):
    """The policy's "no", raised by ``command_for`` and ``run_for``; errors.py renders it for every surface."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True)
class SystemPrincipal:
    """A principal that is not a user (DESIGN.md, "System principals"): no id, never signs in."""

    username: str
    id: None = None
    is_admin: bool = False
    is_active: bool = True
    is_authenticated: bool = True


SCHEDULER = SystemPrincipal("system:scheduler")
CHOICES = SystemPrincipal("system:choices")
SYSTEM_NAMES = frozenset({SCHEDULER.username, CHOICES.username})
# Who reads a run in a notification: a receiver the reviewed catalogue set up for the command or its
# schedule. It sees what an admin sees of a run (secrets masked, as everywhere); it never runs anything.
NOTIFIER = SystemPrincipal("system:notifications")


def is_system(user: Any) -> bool:
    return isinstance(user, SystemPrincipal)


def is_system_run(run: Any) -> bool:
    """A run started by a system principal (no owner; its name is one no user can have)."""
    return run is not None and run.user_id is None and run.username in SYSTEM_NAMES


def is_active(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def is_admin(user: Any) -> bool:
    return is_active(user) and bool(user.is_admin)


def require_admin() -> None:
    """Staff and anonymous callers get 404 on admin routes: nothing says the route exists."""
    if not is_admin(current_user):
        abort(404)


def _of_members_groups(selected: Select[tuple[str]], group_id: Any) -> Select[tuple[str]]:
    """``selected`` (a name column) joined to the groups of the user bound as ``user_id``."""
    return selected.join(GroupMember, GroupMember.group_id == group_id).where(
        GroupMember.user_id == bindparam("user_id")
    )


# Built once: a statement object reused with parameters skips construction and cache-key work
# on every request (this is asked on each run and each API call by staff).
_GRANTED = _of_members_groups(select(CommandGrant.command), CommandGrant.group_id)
_GROUP_NAMES = _of_members_groups(select(Group.name), Group.id)


def _names(statement: Select[tuple[str]], user: Any) -> frozenset[str]:
    return frozenset(db.session.scalars(statement, {"user_id": user.id}))


def granted_commands(user: Any) -> frozenset[str]:
    """Names granted to any group the user belongs to."""
    return _names(_GRANTED, user)


def can_see(user: Any, command: Command | None) -> bool:
    """Granted (or an admin), whatever the address: one half of ``check_run``, never the decision alone."""
    if command is None or not is_active(user):
        return False
    return is_admin(user) or command.name in granted_commands(user)


def fenced(command: Command | None, address: str | None) -> bool:
    """Whether the command's ``allowed_networks`` exclude ``address`` (None: not over the network)."""
    if command is None or address is None:
        return False
    networks = command.networks()
    return networks is not None and not address_allowed(address, networks)


# --- commands ---------------------------------------------------------------------------------


def check_run(user: Any, command: Command | None, address: str | None) -> Refusal | None:
    """None when the user may use the command from ``address``; otherwise why not (the one command decision)."""
    if is_system(user):
        return None if command is not None else NOT_FOUND
    if command is None or not can_see(user, command):
        return NOT_FOUND
    if fenced(command, address):
        return NETWORK
    return None


def command_for(user: Any, name: str, address: str | None) -> Command:
    """The command ``name`` if the user may use it from ``address``.

    :raise Denied: 404 for an unknown name, an ungranted command and one fenced to other networks alike.
    """
    command = current_catalogue().get(name) if is_name(name) else None
    refusal = check_run(user, command, address)
    if refusal is not None or command is None:
        raise Denied(refusal or NOT_FOUND)
    return command


def visible_commands(user: Any, catalogue: Catalogue, address: str | None) -> list[Command]:
    """The commands ``check_run`` lets this user use from ``address`` (one grant query for all of them)."""
    if not is_active(user):
        return []
    candidates = list(catalogue.commands.values())
    if not is_admin(user):
        granted = granted_commands(user)
        candidates = [command for command in candidates if command.name in granted]
    return [command for command in candidates if not fenced(command, address)]


# --- runs -------------------------------------------------------------------------------------


def owns_run(user: Any, run: Any) -> bool:
    return run is not None and run.user_id is not None and run.user_id == getattr(user, "id", None)


def allows_run(user: Any, run: Run, action: RunAction, address: str | None) -> bool:
    """The one run decision, for a run already in hand (see the module docstring for the rule)."""
    if not is_active(user):
        return False
    command = current_catalogue().get(run.command)
    if fenced(command, address):
        return False
    if is_admin(user) or owns_run(user, run):
        return True
    if action != "view":
        return False
    if run.cache_key is not None or is_system_run(run):
        return can_see(user, command)
    return approves(user, command, address) and went_through_approval(run)


def run_for(user: Any, run_id: str, action: RunAction, address: str | None) -> Run:
    """The run ``run_id`` if the user may ``action`` it from ``address``.

    :raise Denied: 404 for an id that could not exist, an unknown run and a run the caller may not see alike.
    """
    run = db.session.get(Run, run_id) if is_run_id(run_id) else None
    if run is None or not allows_run(user, run, action, address):
        raise Denied(NO_RUN)
    return run


def listable_owner(viewer: Any) -> int | None:
    """Whose runs a run list may show the viewer: everyone's (None) for admins, else their own id."""
    if is_admin(viewer):
        return None
    return int(viewer.id)  # a viewer without an id is an error, never "everyone's"


def listed_runs(owner_id: int | None, address: str | None) -> ColumnElement[bool]:
    """What a run list shows: ``owner_id``'s runs (None: everyone's; see ``listable_owner``), no fenced command's."""
    conditions: list[ColumnElement[bool]] = []
    if owner_id is not None:
        conditions.append(Run.user_id == owner_id)
    hidden = [name for name, command in current_catalogue().commands.items() if fenced(command, address)]
    if hidden:
        conditions.append(Run.command.not_in(hidden))
    return and_(true(), *conditions)


def tile_runs(user: Any, command: Command) -> ColumnElement[bool]:
    """The runs of ``command`` a tile may show someone ``command_for`` let through: shared results and their own."""
    return board_runs(user, [command.name])


def board_runs(user: Any, names: list[str]) -> ColumnElement[bool]:
    """``tile_runs`` for several commands at once (the board's one query), each let through by ``command_for``."""
    mine = Run.command.in_(names) if len(names) != 1 else Run.command == names[0]
    if is_admin(user):
        return mine
    system = and_(Run.user_id.is_(None), Run.username.in_(sorted(SYSTEM_NAMES)))
    return and_(mine, or_(Run.cache_key.is_not(None), Run.user_id == user.id, system))


def sees_run_details(user: Any, run: Any) -> bool:
    """Who ran it, from where, with what: its owner, admins, its approvers and the catalogue's notifications
    (cached results are shared)."""
    if is_admin(user) or owns_run(user, run) or user is NOTIFIER:
        return True
    command = current_catalogue().get(run.command)
    return approves(user, command, None) and went_through_approval(run)


# --- approvals --------------------------------------------------------------------------------


def group_names(user: Any) -> frozenset[str]:
    """The names of the groups the user belongs to."""
    return _names(_GROUP_NAMES, user)


def approves(user: Any, command: Command | None, address: str | None) -> bool:
    """Whether the user is an approver of ``command`` from ``address`` (see the module docstring)."""
    if command is None or command.approval is None or not is_active(user) or is_system(user):
        return False
    if fenced(command, address):
        return False
    return not group_names(user).isdisjoint(command.approval.approvers)


def approved_commands(user: Any, catalogue: Catalogue, address: str | None) -> list[str]:
    """The names of the commands the user approves from ``address`` (one group query for all of them)."""
    if not is_active(user) or is_system(user):
        return []
    mine = group_names(user)
    return sorted(
        name
        for name, command in catalogue.commands.items()
        if command.approval is not None
        and not mine.isdisjoint(command.approval.approvers)
        and not fenced(command, address)
    )


def went_through_approval(run: Any) -> bool:
    """Whether the run was requested for approval (it has an approval request, whatever its state now)."""
    if run.status == PENDING_APPROVAL:
        return True
    return db.session.get(ApprovalRequest, run.id) is not None


def decision_refusal(user: Any, run: Run, action: Decision, address: str | None) -> Refusal | None:
    """None when the user may ``approve``, ``deny`` or ``withdraw`` the request of a run ``run_for`` showed them.

    Whether the request is still pending is the flow's to say (409); this is who may.
    """
    if action == "withdraw":
        return None if owns_run(user, run) else NOT_REQUESTER
    if owns_run(user, run):
        return OWN_REQUEST
    if not approves(user, current_catalogue().get(run.command), address):
        return NOT_APPROVER
    return None


def awaiting_decision(user: Any, address: str | None) -> ColumnElement[bool]:
    """The runs waiting for this user's decision: pending requests of commands they approve from
    ``address``, not their own, that they have not decided yet."""
    names = approved_commands(user, current_catalogue(), address)
    if not names:
        return false()
    decided = exists().where(ApprovalDecision.run_id == Run.id, ApprovalDecision.approver_id == user.id)
    return and_(Run.status == PENDING_APPROVAL, Run.command.in_(names), Run.user_id != user.id, ~decided)
