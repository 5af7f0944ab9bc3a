"""Runs that wait for approval: the request (a run row in ``pending_approval``) and its expiry.

``request`` is where ``admission.start`` hands over a command with ``approval``
once policy, rate limit, validation and plan have passed: in ONE write
transaction, the kill switch, the run row (``pending_approval``, params masked,
the definition's sha256, no lease), the approval request (expiry by the
database clock, the secret values sealed), ``run.approval_requested``, and the
approvers' notification.  Nothing spawns.

``expire_overdue`` is swept by the lease supervisor at each beat on every
replica (``executor.RunHooks``), so an expiry is recorded even if nobody looks:
``run.approval_expired`` and ``run.finished`` (outcome ``expired``) with the
secrets wiped, in one transaction per request, ordered against its decisions by
``approvals.store.hold``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from gateway import approvals, audit
from gateway.approvals import store as approval_store
from gateway.catalogue import Command, switches
from gateway.db import dialect
from gateway.db.units import write_connection
from gateway.platform.extensions import db
from gateway.platform.phrases import N_
from gateway.platform.timeutil import utcnow
from gateway.runs import gates, notices, store
from gateway.runs.ending import end_waiting
from gateway.runs.model import Caller, RunRejected, Started
from gateway.runs.refusals import reject

log = logging.getLogger("gateway.runs")

EXPIRED_ERROR = N_("The approval request expired before enough approvers agreed.")


def request(command: Command, caller: Caller, values: dict[str, Any], shown: Any, run_id: str) -> Started:
    """Record the request for approval of a validated run (see the module docstring); nothing spawns.

    :raise RunRejected: 409 when the command is disabled, 503 when the request cannot be recorded.
    """
    sealed = approvals.seal_secrets(run_id, values, command.secret_params())
    try:
        with write_connection() as tx:
            refusal = gates.disabled_refusal(tx, command)
            if refusal is None:
                recorded: Any = _record(tx, command, caller, shown, run_id, sealed)
            else:
                recorded = reject(
                    caller, command.name, refusal.status, refusal.code, refusal.outcome, refusal.message,
                    params=shown, session=tx,
                )  # fmt: skip
    except SQLAlchemyError:
        log.exception("could not record the approval request of %s", command.name)
        raise RunRejected(503, "unavailable", N_("The gateway cannot record this request right now.")) from None
    if isinstance(recorded, RunRejected):
        raise recorded
    return Started(run=recorded)


def _record(tx: Connection, command: Command, caller: Caller, shown: Any, run_id: str, sealed: str | None) -> Any:
    approval = command.approval
    if approval is None:
        raise RuntimeError(f"command {command.name!r} needs no approval")
    now = utcnow()
    expires_at = dialect.database_now(tx) + timedelta(minutes=approval.expires_minutes)
    run = store.insert_waiting(
        tx,
        {
            "id": run_id, "command": command.name, "command_sha256": command.definition_sha256(),
            "kind": command.kind, "params": gates.json_safe(shown), "cache_key": None,
            "user_id": caller.user.id, "username": caller.user.username, "source_ip": caller.source_ip or None,
            "created_at": now, "output_bytes": 0, "output_truncated": False, "host": "", "boot_id": "",
            "timeout_seconds": command.timeout,
        },
    )  # fmt: skip
    approval_store.open_request(
        tx,
        {
            "run_id": run_id, "command": command.name, "min_approvals": approval.min_approvals,
            "created_at": now, "expires_at": expires_at, "sealed_secrets": sealed,
        },
    )  # fmt: skip
    audit.append(
        "run.approval_requested", session=tx, actor=caller.actor(), source_ip=caller.source_ip or None,
        user_agent=caller.user_agent, command=command.name, run_id=run_id, params=shown, outcome=run.status,
        detail={
            "command_sha256": run.command_sha256, "approvers": list(approval.approvers),
            "min_approvals": approval.min_approvals, "expires_at": store.iso(expires_at),
        },
    )  # fmt: skip
    notices.notify_approvers(tx, run, command)
    return run


# --- expiry ---------------------------------------------------------------------------------------


def expire_in(tx: Connection, run_id: str, expires_at: datetime) -> Any:
    """End a held, overdue request as ``expired`` inside ``tx`` (the caller holds it: ``approvals.store.hold``).

    Returns the ended run, or None when its run no longer waited.
    """
    audit.append(
        "run.approval_expired", session=tx, run_id=run_id, outcome="expired",
        detail={"expires_at": store.iso(expires_at)},
    )  # fmt: skip
    ended = end_waiting(tx, run_id, "expired", EXPIRED_ERROR)
    approval_store.close(tx, run_id, "expired", utcnow())
    if ended is not None:
        command = switches.current_catalogue().get(ended.command)
        notices.notify_requester(tx, ended, command, "expired")
    return ended


def expire_overdue() -> list[str]:
    """Expire every pending request whose time ran out by the database clock; the run ids expired."""
    with db.engine.connect() as connection:  # a read: the write lock only for what is found
        overdue = approval_store.expired(connection, dialect.database_now(connection))
    expired = []
    for run_id in overdue:
        with write_connection() as tx:
            held = approval_store.hold(tx, run_id)
            now = dialect.database_now(tx)
            if held is None or held["expires_at"] > now:
                continue  # decided meanwhile (a decision or a withdrawal holds it first)
            if expire_in(tx, run_id, held["expires_at"]) is not None:
                expired.append(run_id)
    for run_id in expired:
        log.info("approval request of run %s expired", run_id)
    return expired
