"""A run in its worker thread: mark it running, hand its plan to its kind's runner, record how it ended.

Called by the executor (``RunHooks.execute``) inside an app context, with the
executor itself for what belongs to this process: the pending process groups
and the retry of an end the database could not take.
"""

from __future__ import annotations

import functools
import logging

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from gateway.platform.phrases import N_
from gateway.platform.timeutil import utcnow
from gateway.runners import runner_for
from gateway.runners.base import Outcome
from gateway.runs import store
from gateway.runs.ending import finish
from gateway.runs.executor import Executor
from gateway.runs.model import Job
from gateway.runs.output import ChunkWriter
from gateway.runs.uploads import remove_folder

log = logging.getLogger("gateway.runs")


def execute(job: Job, executor: Executor) -> None:
    if job.queued and not _mark_running(job):
        return  # cancelled (or reaped) while it waited for a slot
    excerpt_limit = int(current_app.config["AUDIT_OUTPUT_EXCERPT_BYTES"])
    writer = ChunkWriter(job.run_id, excerpt_limit=excerpt_limit, groups=executor.groups)
    if job.cancel.is_set():
        outcome = Outcome(status="cancelled")
    elif job.plan is None:
        outcome = Outcome(status="failed", error=N_("internal error: the run has nothing to execute"))
    else:
        outcome = runner_for(job.command.kind).run(job.plan, writer, job.cancel)
        writer.close_decoders()
    if outcome.status == "cancelled":
        outcome.error = job.cancel_reason
    # Uploads go before the terminal state is recorded: whoever sees the run finished
    # (a long-poll wakes on that commit) must not still find its files on disk.
    remove_folder(job.tempdir)
    try:
        finish(job, outcome, writer)
    except SQLAlchemyError:
        # The database is away as the command ends. The outcome is known and kept: the
        # supervisor retries at each beat (keeping the lease meanwhile); if this process
        # dies first, the lease runs out and another replica's reaper records it lost.
        log.warning("could not record the end of run %s; retrying at each heartbeat", job.run_id, exc_info=True)
        executor.defer_finish(job.run_id, functools.partial(finish, job, outcome, writer))


def _mark_running(job: Job) -> bool:
    started_at = utcnow()
    if not store.mark_running(job.run_id, started_at):
        return False
    job.started_at = started_at
    return True
