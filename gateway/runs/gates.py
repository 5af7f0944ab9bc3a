"""What every admission checks inside its write transaction, and the hand-over of an admitted run to the executor.

Shared by a fresh start (``admission``) and the start of a run at its last
approval (``decisions``): the kill switch, then the command's concurrency
(under the command's lock, so replicas decide one at a time), each as the
policy's ``Refusal`` value its caller records in its own way; and ``launch``,
which submits the job once the run's start has committed.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Connection

from gateway.access.policy import Refusal
from gateway.catalogue import Command, switches
from gateway.db.models import Run
from gateway.platform import signals
from gateway.platform.appctx import app_object
from gateway.platform.phrases import N_
from gateway.platform.wakeup import wakeups
from gateway.runs import store
from gateway.runs.executor import Executor
from gateway.runs.model import Job, Started

DISABLED = Refusal(409, "conflict", "disabled", N_("This command is disabled by an administrator."))


def disabled_refusal(tx: Connection, command: Command) -> Refusal | None:
    """The kill switch, read inside the transaction that records the start: a command disabled a
    moment ago on another replica cannot slip through between check and start."""
    return DISABLED if switches.is_disabled(command.name, session=tx) else None


def concurrency_refusal(tx: Connection, command: Command) -> Refusal | None:
    """Past the command's ``concurrency``; the caller holds the command's lock (``store.lock_command``)."""
    if command.concurrency is None:
        return None
    live = store.live_count(tx, command.name)
    if live < command.concurrency:
        return None
    message = N_(
        "This command is already running %(count)s time(s), its limit; try again when one finishes.", count=live
    )
    return Refusal(409, "conflict", "concurrency_full", message)


def launch(
    run: Run,
    command: Command,
    plan: Any,
    executor: Executor,
    *,
    free_slot: bool,
    tempdir: str | None = None,
    callback_context: Any = None,
    schedule: str | None = None,
) -> Started:
    """Hand a run whose start is committed to the executor (its slot was reserved before the commit).

    ``schedule``: the schedule whose occurrence the run is (its end's notifications follow it).
    """
    job = Job(
        run_id=run.id, command=command, username=run.username, queued=not free_slot, plan=plan,
        tempdir=tempdir, callback_context=callback_context, started_at=run.started_at, schedule=schedule,
    )  # fmt: skip
    signals.send(signals.run_started, app_object(), run=run, callback_context=callback_context)
    version = wakeups.version(run.id)
    executor.submit(job)
    return Started(run=run, job=job, version=version)


def json_safe(value: Any) -> Any:
    """``value`` as the run row's JSON column gives it back (what its ``params`` hold)."""
    return json.loads(json.dumps(value, default=str))
