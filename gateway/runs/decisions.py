"""Deciding a request for approval: approve, deny, withdraw, and the start at the last approval.

``decide`` asks the policy who may (``policy.run_for``, then
``policy.decision_refusal``); each refusal is an audited ``run.approval_refused``
(bounded and flood-capped like every refusal).  Then ONE write transaction on
the held request (``approvals.store.hold`` orders the decisions, withdrawal and
expiry of one request across replicas): the decision row and its ledger event
(``run.approved``, ``run.denied``, ``run.withdrawn``) and, when the request is
decided, the run row's change with its own events.  Each distinct approver
counts once, and only while still an approver.

At the last approval the requester must still be active and allowed by the
policy and the definition's sha256 unchanged; then the usual admission (kill
switch, concurrency) runs and the run starts under the requester's name with
the approvers in ``run.started``'s detail, through the executor of the replica
that took the last approval.  If anything refuses it then, the run ends
``failed`` with an error naming the refusal.  Two approvers approving at the
same moment on two replicas start it once: the second waits for the first's
hold, then finds the request decided.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from gateway import approvals, audit
from gateway.access import policy
from gateway.approvals import store as approval_store
from gateway.catalogue import Command, switches
from gateway.catalogue.params import ParamError
from gateway.catalogue.values import collect_errors
from gateway.db import dialect
from gateway.db.models import Run, User
from gateway.db.units import on_commit, write_connection
from gateway.platform import notify
from gateway.platform.extensions import db
from gateway.platform.phrases import N_
from gateway.platform.secretbox import SecretBoxError
from gateway.platform.timeutil import utcnow
from gateway.platform.wakeup import wakeups
from gateway.runners import runner_for
from gateway.runners.base import RunContext
from gateway.runs import gates, notices, pending, store
from gateway.runs.ending import end_waiting
from gateway.runs.executor import Executor, ExecutorClosed
from gateway.runs.model import PENDING_APPROVAL, Caller, RunRejected
from gateway.runs.workers import get_executor

log = logging.getLogger("gateway.runs")

DECIDED = {"approve": "approved", "deny": "denied", "withdraw": "withdrawn"}


@dataclass
class _Decided:
    """What a decision's transaction came to: the run as it is now, a conflict, or a plan to launch."""

    run: Run
    conflict: tuple[str, str] | None = None  # (outcome, message) of a 409
    command: Command | None = None
    plan: Any = None  # set when the run was admitted: the executor takes it after the commit


def decide(run_id: str, caller: Caller, action: policy.Decision, comment: Any) -> Run:
    """Approve, deny or withdraw the request of run ``run_id``; the run as it is afterwards.

    :raise RunRejected: 404 (no such run for the caller), 400 (the comment), 403 (not theirs to decide),
        409 (no longer pending, or already decided by this approver), 503 (nothing could be recorded).
    """
    try:
        run = policy.run_for(caller.user, run_id, "view", caller.source_ip)
    except policy.Denied as exc:
        raise _refused(caller, None, run_id, action, exc.refusal) from None
    try:
        text = approvals.check_comment(comment)
    except approvals.CommentError as exc:
        invalid = policy.Refusal(
            400, "validation_error", "invalid_comment", N_("comment: %(problem)s", problem=exc.problem)
        )
        raise _refused(caller, run, run_id, action, invalid, {"comment": str(exc)}) from None
    refusal = policy.decision_refusal(caller.user, run, action, caller.source_ip)
    if refusal is not None:
        raise _refused(caller, run, run_id, action, refusal)
    if run.status != PENDING_APPROVAL:
        gone = _conflict("decided", N_("This request was already decided (%(status)s).", status=run.status))
        raise _refused(caller, run, run_id, action, gone)
    if action == "approve":
        return _approve(run, caller, text)
    try:
        with write_connection() as tx:
            decided = _end_in(tx, run, caller, action, text)
    except SQLAlchemyError:
        log.exception("could not record a %s of run %s", action, run_id)
        raise RunRejected(503, "unavailable", N_("The gateway cannot record this decision right now.")) from None
    if decided.conflict is not None:
        raise _refused(caller, run, run_id, action, _conflict(*decided.conflict))
    return decided.run


def refuse_decision(
    caller: Caller, run_id: str, action: str, status: int, code: str, message: str, details: dict[str, str]
) -> RunRejected:
    """A decision refused before it could be read (a malformed body, a wrong content type), on record like any."""
    return _refused(caller, None, run_id, action, policy.Refusal(status, code, "invalid_request", message), details)


def _conflict(outcome: str, message: str) -> policy.Refusal:
    return policy.Refusal(409, "conflict", outcome, message)


def _refused(
    caller: Caller,
    run: Run | None,
    run_id: str,
    action: str,
    refusal: policy.Refusal,
    details: dict[str, str] | None = None,
) -> RunRejected:
    """Audit a refused decision (``run.approval_refused``, bounded and flood-capped) and build its exception."""
    try:
        audit.record_capped(
            "run.approval_refused", actor=caller.actor(), source_ip=caller.source_ip or None,
            user_agent=caller.user_agent, command=None if run is None else run.command, run_id=run_id,
            outcome=refusal.outcome, detail={"action": action, "status": refusal.status, "message": refusal.message},
        )  # fmt: skip
    except SQLAlchemyError:
        log.exception("could not audit a refused %s", action)
        return RunRejected(503, "unavailable", N_("The audit ledger is unavailable; nothing was decided."))
    return RunRejected(refusal.status, refusal.code, refusal.message, details)


def _held(tx: Connection, run: Run) -> tuple[Any, tuple[str, str] | None]:
    """The request held for this transaction, or why it cannot be decided any more (expiring it when overdue)."""
    held = approval_store.hold(tx, run.id)
    if held is None:
        return None, ("decided", N_("This request was already decided."))
    if held["expires_at"] <= dialect.database_now(tx):
        pending.expire_in(tx, run.id, held["expires_at"])
        return None, ("expired", pending.EXPIRED_ERROR)
    return held, None


# --- deny and withdraw ------------------------------------------------------------------------


def _end_in(tx: Connection, run: Run, caller: Caller, action: str, text: str) -> _Decided:
    _held_request, conflict = _held(tx, run)
    if conflict is not None:
        return _Decided(run, conflict)
    who = caller.user.username
    if action == "deny":
        if approval_store.decision_of(tx, run.id, caller.user.id) is not None:
            return _Decided(run, ("already_decided", N_("You have already approved this request; it counts once.")))
        _add_decision(tx, run, caller, "denied", text)
        _event(tx, "run.denied", run, caller, "denied", {"comment": text})
        error, detail = N_("Denied by %(user)s.", user=who), {"denied_by": who}
    else:
        _event(tx, "run.withdrawn", run, caller, "withdrawn", {"comment": text})
        error, detail = N_("Withdrawn by its requester."), {}
    state = DECIDED[action]
    ended = end_waiting(tx, run.id, state, error, detail)
    approval_store.close(tx, run.id, state, utcnow())
    if ended is not None and action == "deny":
        notices.notify_requester(tx, ended, switches.current_catalogue().get(run.command), state)
    return _Decided(ended or run)


def _add_decision(tx: Connection, run: Run, caller: Caller, decision: str, text: str) -> None:
    approval_store.add_decision(
        tx,
        {
            "run_id": run.id, "approver_id": caller.user.id, "approver_name": caller.user.username,
            "decision": decision, "comment": text, "source_ip": caller.source_ip or None, "decided_at": utcnow(),
        },
    )  # fmt: skip


def _event(tx: Connection, name: str, run: Run, caller: Caller, outcome: str, detail: dict[str, Any]) -> None:
    audit.append(
        name, session=tx, actor=caller.actor(), source_ip=caller.source_ip or None, user_agent=caller.user_agent,
        command=run.command, run_id=run.id, params=run.params, outcome=outcome, detail=detail,
    )  # fmt: skip


# --- approve, and the start at the last approval -----------------------------------------------


def _approve(run: Run, caller: Caller, text: str) -> Run:
    executor = get_executor()
    try:
        free_slot = executor.reserve()  # before the transaction: the run may start in it
    except ExecutorClosed:
        draining = policy.Refusal(503, "unavailable", "draining", N_("This replica is shutting down; try again."))
        raise _refused(caller, run, run.id, "approve", draining) from None
    try:
        with write_connection() as tx:
            decided = _approve_in(tx, run, caller, text, free_slot, executor)
    except BaseException as exc:
        executor.release()
        if isinstance(exc, SQLAlchemyError):
            log.exception("could not record an approval of run %s", run.id)
            raise RunRejected(503, "unavailable", N_("The gateway cannot record this decision right now.")) from None
        raise
    if decided.command is None:
        executor.release()
    if decided.conflict is not None:
        raise _refused(caller, run, run.id, "approve", _conflict(*decided.conflict))
    if decided.command is not None:
        gates.launch(decided.run, decided.command, decided.plan, executor, free_slot=free_slot)
    return decided.run


def _approve_in(tx: Connection, run: Run, caller: Caller, text: str, free_slot: bool, executor: Executor) -> _Decided:
    held, conflict = _held(tx, run)
    if conflict is not None:
        return _Decided(run, conflict)
    if approval_store.decision_of(tx, run.id, caller.user.id) is not None:
        return _Decided(run, ("already_decided", N_("You have already approved this request; it counts once.")))
    command = switches.current_catalogue().get(run.command)
    groups = command.approval.approvers if command is not None and command.approval is not None else []
    _add_decision(tx, run, caller, "approved", text)
    counted = approval_store.counted_approvers(tx, run.id, groups)
    needed = int(held["min_approvals"])
    last = command is not None and len(counted) >= needed
    if last and command is not None and command.concurrency is not None:
        # The command's lock before the ledger's, in the order admission takes them (the command's
        # lock, then run.started): one order for every writer that takes both.
        store.lock_command(tx, command.name)
    detail = {"comment": text, "approvals": len(counted), "min_approvals": needed}
    _event(tx, "run.approved", run, caller, "approved", detail)
    if not last or command is None:
        return _Decided(run)
    return _start_in(tx, run, command, counted, free_slot, executor)


def _start_in(
    tx: Connection, run: Run, command: Command, approvers: list[str], free_slot: bool, executor: Executor
) -> _Decided:
    """The last approval: the checks, then the start (or the end as ``failed`` naming what refused it)."""
    plan, problem = None, _requester_problem(run, command)
    if problem is None:
        plan, problem = _plan(tx, run, command)
    if problem is None:  # the usual admission; the command's lock is held already (see _approve_in)
        refusal = gates.disabled_refusal(tx, command) or gates.concurrency_refusal(tx, command)
        problem = None if refusal is None else (refusal.outcome, refusal.message)
    now = utcnow()
    approval_store.close(tx, run.id, "approved", now)
    if problem is not None:
        outcome, message = problem
        error = N_("Approved, but not started: %(reason)s", reason=message)
        ended = end_waiting(tx, run.id, "failed", error, {"refusal": outcome, "approvers": approvers})
        notices.notify_requester(tx, ended or run, command, "failed")
        return _Decided(ended or run)
    started = store.start_waiting(
        tx, run.id,
        {"status": "running" if free_slot else "queued", "started_at": now if free_slot else None,
         "host": executor.host, "boot_id": executor.boot_id},
        timedelta(seconds=3 * executor.heartbeat),
    )  # fmt: skip
    if started is None:  # held, so still waiting: this only states it
        return _Decided(run, ("decided", N_("This request was already decided.")))
    audit.append(
        "run.started", session=tx, actor={"id": run.user_id, "name": run.username}, source_ip=run.source_ip,
        command=run.command, run_id=run.id, params=run.params, outcome=started.status,
        detail={"command_sha256": started.command_sha256, "approvers": approvers},
    )  # fmt: skip
    notices.notify_requester(tx, started, command, started.status)
    notify.publish(run.id, "started", tx)  # other replicas' waiters on the request, at commit
    on_commit(tx, lambda: wakeups.notify(run.id))
    return _Decided(started, command=command, plan=plan)


def _requester_problem(run: Run, command: Command) -> tuple[str, str] | None:
    """Why the requester's run may not start now (the definition changed, or the requester may no longer run it)."""
    if command.definition_sha256() != run.command_sha256:
        return "definition_changed", N_("the command's definition changed since the request; ask again.")
    requester = None if run.user_id is None else db.session.get(User, run.user_id, populate_existing=True)
    if not policy.is_active(requester):
        return "requester_inactive", N_("the requester's account is disabled.")
    if policy.check_run(requester, command, run.source_ip) is not None:
        return "requester_not_allowed", N_("the requester may no longer run this command.")
    unavailable = switches.current_catalogue().unavailable_reason(command)
    if unavailable:
        return "unavailable", N_("this command is unavailable: %(reason)s.", reason=unavailable)
    return None


def _plan(tx: Connection, run: Run, command: Command) -> tuple[Any, tuple[str, str] | None]:
    """The run's plan from its frozen params and its sealed secrets, validated again as at the request."""
    try:
        secrets = approvals.open_secrets(run.id, approval_store.sealed_secrets(tx, run.id))
    except SecretBoxError:
        return None, ("secrets_unreadable", N_("its secret values open under none of the configured secret keys."))
    supplied = {**(run.params or {}), **secrets}
    values, errors = collect_errors(command, supplied, "json")
    if errors:
        field, message = sorted(errors.items())[0]
        return None, ("invalid_params", N_("parameter %(field)s %(problem)s.", field=field, problem=message))
    context = RunContext(
        run.id, run.username, float(run.timeout_seconds), current_app.config, switches.current_catalogue()
    )
    try:
        return runner_for(command.kind).plan(command, values, context), None
    except ParamError as exc:
        return None, ("invalid_params", N_("parameter %(field)s %(problem)s.", field=exc.field, problem=exc.message))
