"""Keeping runs honest across workers: cancel, the lease each live run holds, the reaper, the orphan kill.

A live run's row carries a lease its worker renews every heartbeat (by the
database clock).  A lease that runs out means the worker died: any replica's
reaper ends the run as ``lost``, and a worker starting on the same host kills
the process groups the dead one left behind.
"""

from __future__ import annotations

import logging
import signal
from datetime import timedelta
from typing import Any

from flask import current_app

from gateway import audit
from gateway.access import policy
from gateway.db import dialect
from gateway.db.models import Run
from gateway.db.units import write_transaction
from gateway.platform import notify
from gateway.platform.extensions import db
from gateway.platform.phrases import N_
from gateway.runners.base import Outcome
from gateway.runners.processes import belongs_to_run, group_alive, kill_group
from gateway.runs import store
from gateway.runs.ending import finish
from gateway.runs.model import LIVE, PENDING_APPROVAL, Caller, Job, RunRejected

log = logging.getLogger("gateway.runs")


def cancel(run_id: str, caller: Caller) -> Run:
    """Request cancellation (audited). Queued runs end at once; running ones get SIGTERM, then SIGKILL.

    Whether the caller may is the policy's run decision (``policy.run_for``): 404 when not.
    """
    try:
        run = policy.run_for(caller.user, run_id, "cancel", caller.source_ip)
    except policy.Denied as exc:
        raise RunRejected(exc.refusal.status, exc.refusal.code, exc.refusal.message) from None
    if run.status == PENDING_APPROVAL:
        raise RunRejected(409, "conflict", N_("The run is waiting for approval; its requester may withdraw it."))
    if run.status not in LIVE:
        raise RunRejected(409, "conflict", N_("The run has already ended (%(status)s).", status=run.status))
    fields: dict[str, Any] = {
        "actor": caller.actor(), "source_ip": caller.source_ip or None, "user_agent": caller.user_agent,
        "command": run.command, "run_id": run.id,
    }  # fmt: skip
    with write_transaction() as tx:
        store.request_cancel(tx, run_id)
        audit.append("run.cancel_requested", session=tx, outcome="requested", **fields)
        notify.publish(run_id, "cancel", tx)  # the replica running it cancels at once, not at its next beat
    executor = current_app.extensions.get("gateway.executor")
    job = executor.local_job(run_id) if executor is not None else None
    if job is not None:
        cancel_local(job)
    db.session.expire_all()
    return db.session.get(Run, run_id)  # type: ignore[return-value]


def cancel_local(job: Job) -> None:
    """Cancel a job of this process: signal its process, or end it at once if it never started."""
    job.cancel.set()
    if job.queued:
        finish(job, Outcome(status="cancelled", error=N_("cancelled before it started")), only_from=("queued",))


def renew_leases(boot_id: str, heartbeat: float) -> list[str]:
    """Extend this worker's leases; return ids of its runs that were asked to cancel (from anywhere)."""
    with write_transaction() as tx:
        expires = dialect.database_now(tx) + timedelta(seconds=3 * heartbeat)
        return store.extend_leases(tx, boot_id, expires)


def reap_expired() -> list[str]:
    """Mark runs whose lease expired as ``lost`` (one run.finished each); returns their ids."""
    with write_transaction() as tx:
        expired = store.expired_runs(tx, dialect.database_now(tx))
    lost = []
    for run_id in expired:
        job = Job(run_id=run_id, command=None, username="", queued=False, schedule_known=False)  # type: ignore[arg-type]
        if finish(job, Outcome(status="lost", error=N_("the worker running it stopped (lease expired)"))):
            lost.append(run_id)
    for run_id in lost:
        log.warning("run %s marked lost", run_id)
    return lost


def kill_orphaned_groups(host: str, boot_id: str) -> list[int]:
    """At worker start: kill process groups that dead workers on this host left behind.

    Only runs whose lease has expired count (their worker stopped renewing it),
    and only a group a member of which still carries that run's GATEWAY_RUN_ID.
    """
    killed = []
    for run_id, pgid in store.orphaned_groups(host, boot_id):
        if pgid and group_alive(pgid) and belongs_to_run(pgid, run_id) and kill_group(pgid, signal.SIGKILL):
            killed.append(pgid)
            log.warning("killed process group %s left behind by a dead worker (run %s)", pgid, run_id)
    return killed
