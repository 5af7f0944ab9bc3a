"""The end of a run: its one terminal state, written once, with its ``run.finished`` event.

Terminal updates are conditional on the run still being live (``queued`` /
``running``), so each run gets exactly one terminal state and one
``run.finished`` event, whoever gets there first: the worker, a cancel of a
queued run, or the reaper marking it ``lost``.  A run that waited for approval
and never started ends the same way (``end_waiting``: denied, expired,
withdrawn, or failed at its start), conditional on its still waiting.  The
notifications that end calls for join the same commit (``notices``: the outbox
rows).  Both ends record the error the same way (``error_columns``): the English in
``runs.error``, and its phrase, when it is one, in ``runs.error_phrase`` for the pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from gateway import audit
from gateway.db.models import Run
from gateway.db.units import on_commit, write_connection
from gateway.platform import notify, signals
from gateway.platform.appctx import app_object
from gateway.platform.extensions import db
from gateway.platform.phrases import stored_form
from gateway.platform.timeutil import as_utc, utcnow
from gateway.platform.wakeup import wakeups
from gateway.runners.base import Outcome
from gateway.runs import store
from gateway.runs.model import LIVE, PENDING_APPROVAL, Job
from gateway.runs.notices import notify_end
from gateway.runs.output import ChunkWriter


def finish(job: Job, outcome: Outcome, writer: ChunkWriter | None = None, only_from: tuple[str, ...] = LIVE) -> bool:
    """Record the terminal state once (conditional on the run still being live), with run.finished.

    Written with Core statements on the table: this is on every run's path, and
    the ORM's bookkeeping cost more than the commit itself.  For a run that
    started here (``job.started_at`` known) the conditional UPDATE ... RETURNING
    is the only statement on the run row.
    """
    # Output and process group are taken now and put back if the transaction fails, so a
    # retry (see execution.execute) writes them: nothing the command printed is lost to an outage.
    chunks = writer.take() if writer is not None else []
    pgid = writer.take_pgid() if writer is not None else None
    try:
        return _record_end(job, outcome, writer, only_from, chunks, pgid)
    except BaseException:
        if writer is not None:
            writer.restore(chunks, pgid)
        raise


def error_columns(error: str | None) -> dict[str, Any]:
    """A run's recorded error as its row keeps it: the English, and the phrase a page renders (None: plain text)."""
    return {"error": error, "error_phrase": stored_form(error)}


def _record_end(
    job: Job,
    outcome: Outcome,
    writer: ChunkWriter | None,
    only_from: tuple[str, ...],
    chunks: list[dict[str, object]],
    pgid: int | None,
) -> bool:
    now = utcnow()
    with write_connection() as tx:
        values: dict[str, Any] = {
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            **error_columns(outcome.error),
            "finished_at": now,
            "output_bytes": outcome.output_bytes,
            "output_truncated": outcome.truncated,
            "output_sha256": outcome.output_sha256,
            "result": outcome.result,
            "lease_expires_at": None,
        }
        if job.started_at is not None:
            values["duration_ms"] = _duration_ms(job.started_at, now)
        if pgid is not None:
            values["pgid"] = pgid
        row = store.finish_statement(only_from).first(tx, {"_run_id": job.run_id, **values})
        if row is None:
            return False
        ended = store.detached_run(row)
        if job.started_at is None:  # a run that did not start here: its duration from the stored start
            ended.duration_ms = _duration_ms(ended.started_at or now, now)
            store.set_duration(tx, job.run_id, ended.duration_ms)
        if chunks:
            store.INSERT_CHUNKS.execute_many(tx, chunks)
        detail = {
            "command_sha256": ended.command_sha256,
            "exit_code": outcome.exit_code,
            "duration_ms": ended.duration_ms,
            "output_bytes": outcome.output_bytes,
            "output_sha256": outcome.output_sha256,
            "output_truncated": outcome.truncated,
        }
        if writer is not None and writer.excerpt:
            detail["output_excerpt"] = writer.excerpt
        if outcome.result is not None:
            detail["rows"] = len(outcome.result.get("rows", []))
            detail["result_truncated"] = outcome.result.get("truncated")
        if outcome.error:
            detail["error"] = outcome.error
        audit.append(
            "run.finished", session=tx, actor={"id": ended.user_id, "name": ended.username},
            source_ip=ended.source_ip, command=ended.command, run_id=job.run_id, params=ended.params,
            outcome=outcome.status, detail=detail,
        )  # fmt: skip
        notify_end(tx, job, ended, writer.excerpt if writer is not None else "")  # the outbox, in this commit
        notify.publish(job.run_id, "finished", tx)  # other replicas' waiters, at commit
    wakeups.notify(job.run_id)
    cached = db.session.identity_map.get(db.session.identity_key(Run, job.run_id))
    if cached is not None:
        db.session.expire(cached)  # updated behind the ORM's back just now
    if signals.run_finished.receivers:
        signals.send(signals.run_finished, app_object(), run=ended, callback_context=job.callback_context)
    return True


def end_waiting(
    tx: Connection, run_id: str, status: str, error: str, detail: Mapping[str, Any] | None = None
) -> Run | None:
    """End a run that waited for approval and never started, inside ``tx``, with its one ``run.finished``.

    Conditional on the run still being ``pending_approval``: None when it was not (someone else ended
    or started it first).  Waiters are woken and ``run_finished`` is sent once ``tx`` has committed.
    """
    now = utcnow()
    values = {"status": status, **error_columns(error), "finished_at": now, "lease_expires_at": None}
    row = store.finish_statement((PENDING_APPROVAL,)).first(tx, {"_run_id": run_id, **values})
    if row is None:
        return None
    ended = store.detached_run(row)
    audit.append(
        "run.finished", session=tx, actor={"id": ended.user_id, "name": ended.username},
        source_ip=ended.source_ip, command=ended.command, run_id=run_id, params=ended.params,
        outcome=status, detail={"command_sha256": ended.command_sha256, "error": error, **(detail or {})},
    )  # fmt: skip
    notify.publish(run_id, "finished", tx)
    on_commit(tx, lambda: _announce(ended))
    return ended


def _announce(ended: Run) -> None:
    """After the commit of an end that no worker wrote: wake its waiters here, tell the integrators."""
    wakeups.notify(ended.id)
    if signals.run_finished.receivers:
        signals.send(signals.run_finished, app_object(), run=ended, callback_context=None)


def _duration_ms(started_at: datetime, now: datetime) -> int:
    return int((now - as_utc(started_at)).total_seconds() * 1000)
