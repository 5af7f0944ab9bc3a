"""Every statement on the runs and run-output tables: the engine's writes, the reads pages and the API
show, and prune.

Functions that take ``tx`` run inside the caller's transaction (which may also
carry an audit event); the others open their own.  The hot-path writes are
Core statements built once (``Prepared``): the ORM's bookkeeping cost more
than the commit on every run.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.instrumentation import manager_of_class

from gateway import audit
from gateway.access import policy
from gateway.catalogue import Command
from gateway.db import dialect
from gateway.db.approval_tables import ApprovalDecision, ApprovalRequest
from gateway.db.models import Run, RunOutputChunk, ScheduleOccurrence
from gateway.db.prepared import Prepared
from gateway.db.units import write_connection, write_transaction
from gateway.platform.extensions import db
from gateway.platform.identifiers import is_name, is_run_id
from gateway.platform.timeutil import as_utc, utcnow
from gateway.runs.model import LIVE, PENDING_APPROVAL, TERMINAL

_RUNS = Run.__table__
_CHUNKS = RunOutputChunk.__table__
_RUN_KEYS = tuple(column.key for column in _RUNS.c)

INSERT_CHUNKS = Prepared(insert(_CHUNKS))
SET_PGID = Prepared(update(_RUNS).where(_RUNS.c.id == bindparam("run_id")).values(pgid=bindparam("pgid")))
_INSERT_RUN = Prepared(insert(_RUNS))
_START_QUEUED = Prepared(
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("run_id"), _RUNS.c.status == "queued")
    .values(status="running", started_at=bindparam("started_at"))
)
_OUTPUT_TEXT = select(_CHUNKS.c.text).where(_CHUNKS.c.run_id == bindparam("run_id")).order_by(_CHUNKS.c.seq)


def detached_run(values: Mapping[Any, Any]) -> Run:
    """A Run holding ``values`` (columns of the runs table by key): in no session, nothing pending.

    Filled the way the ORM fills an object it loads, straight into the
    instance's dict: the constructor's per-attribute change events cost thirty
    times more, and every run builds two.  Absent columns read as None.
    """
    run: Run = manager_of_class(Run).new_instance()
    run.__dict__.update({key: values[key] for key in _RUN_KEYS if key in values})
    return run


_RUN_BY_ID = Prepared(select(_RUNS).where(_RUNS.c.id == bindparam("run_id")))


def current_run(run_id: str) -> Run | None:
    """The run as committed now, detached; None when there is no such run.

    A long-poll or a stream re-reads its run at every wake-up, and the run may have moved
    in any replica meanwhile: a prepared statement on a connection of its own (the ORM's
    identity-map load cost more than the query, at every wake-up of every waiter).
    """
    with db.engine.connect() as connection:
        row = _RUN_BY_ID.first(connection, {"run_id": run_id})
    return None if row is None else detached_run(row)


def iso(value: datetime | None) -> str | None:
    """The API's time form (``...Z``), also the time half of a run list's cursor."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


# --- admission -------------------------------------------------------------------------------


def lock_command(tx: Connection, name: str) -> None:
    """Serialise starts of one command (cache joins, concurrency) across replicas, until ``tx`` ends."""
    dialect.transaction_lock(tx, f"run:{name}")


def cached_run(tx: Connection, command: Command, key: str) -> tuple[Run | None, bool]:
    """A live identical run to join, or a fresh enough finished one; (run, joined)."""
    in_flight = tx.execute(
        select(_RUNS).where(_RUNS.c.cache_key == key, _RUNS.c.status.in_(LIVE)).order_by(_RUNS.c.created_at).limit(1)
    ).first()
    if in_flight is not None:
        return detached_run(in_flight._mapping), True
    cutoff = utcnow() - timedelta(seconds=command.cache_seconds)
    recent = tx.execute(
        select(_RUNS)
        .where(_RUNS.c.cache_key == key, _RUNS.c.status == "succeeded", _RUNS.c.finished_at >= cutoff)
        .order_by(_RUNS.c.finished_at.desc())
        .limit(1)
    ).first()
    return (None if recent is None else detached_run(recent._mapping)), False


def reusable_run(command: Command, key: str) -> Run | None:
    """The run a start of ``command`` with cache key ``key`` would join or show now (``cached_run``), read only.

    Whoever reads a shared result this way writes nothing (a list of choices read from its cache).
    """
    with db.engine.connect() as connection:
        run, _joined = cached_run(connection, command, key)
    return run


def live_count(tx: Connection, command_name: str) -> int:
    """How many runs of the command are queued or running (its ``concurrency`` counts them)."""
    live = tx.scalar(select(func.count()).select_from(Run).where(Run.command == command_name, Run.status.in_(LIVE)))
    return live or 0


def insert_run(tx: Connection, values: dict[str, Any], lease: timedelta) -> Run:
    """Write a new run row whose lease ends ``lease`` from now by the database clock; the run as written.

    A Core insert with the values as parameters (the ORM's unit of work, or
    ``.values()``, cost more than the commit on this path).
    """
    if dialect.has_server_clock(tx):
        tx.execute(_insert_run_leased_by_database(lease), values)
        return detached_run({**values, "lease_expires_at": utcnow() + lease})  # what the caller reads back
    values["lease_expires_at"] = utcnow() + lease  # SQLite's clock is this host's
    _INSERT_RUN.execute(tx, values)
    return detached_run(values)


@functools.lru_cache(maxsize=4)
def _insert_run_leased_by_database(lease: timedelta) -> Any:
    """INSERT of a run row whose lease ends ``lease`` after now by PostgreSQL's clock (no extra round trip)."""
    return insert(_RUNS).values(lease_expires_at=dialect.server_clock() + lease)


# --- a run waiting for approval -------------------------------------------------------------


def insert_waiting(tx: Connection, values: dict[str, Any]) -> Run:
    """Write the row of a run that waits for approval: ``pending_approval``, no lease (nothing runs)."""
    values = {**values, "status": PENDING_APPROVAL, "lease_expires_at": None, "started_at": None}
    _INSERT_RUN.execute(tx, values)
    return detached_run(values)


def start_waiting(tx: Connection, run_id: str, values: dict[str, Any], lease: timedelta) -> Run | None:
    """A waiting run admitted at its last approval: ``values`` (status, started_at, host, boot id) and a
    lease, conditional on the run still waiting; the run as written, or None when it no longer waited."""
    lease_end: Any = dialect.server_clock() + lease if dialect.has_server_clock(tx) else utcnow() + lease
    row = tx.execute(
        update(_RUNS)
        .where(_RUNS.c.id == run_id, _RUNS.c.status == PENDING_APPROVAL)
        .values(**values, lease_expires_at=lease_end)
        .returning(*_RUNS.c)
    ).first()
    return None if row is None else detached_run(row._mapping)


# --- execution and the terminal write --------------------------------------------------------


def mark_running(run_id: str, started_at: datetime) -> bool:
    """A queued run got its slot: ``running`` from ``started_at``; False when it is no longer queued."""
    with write_connection() as tx:
        matched = _START_QUEUED.execute(tx, {"run_id": run_id, "started_at": started_at})
    return matched == 1


@functools.lru_cache(maxsize=8)
def finish_statement(only_from: tuple[str, ...]) -> Prepared:
    """The conditional terminal UPDATE ... RETURNING; the SET clause comes from the parameters given."""
    # The IN list as bound parameters of its own (not an expanding one): compiled once, as is.
    live = _RUNS.c.status.in_([bindparam(f"_from_{i}", status) for i, status in enumerate(only_from)])
    return Prepared(update(_RUNS).where(_RUNS.c.id == bindparam("_run_id"), live).returning(*_RUNS.c))


def set_duration(tx: Connection, run_id: str, duration_ms: int) -> None:
    tx.execute(update(_RUNS).where(_RUNS.c.id == run_id).values(duration_ms=duration_ms))


# --- cancel, leases, the reaper --------------------------------------------------------------


def request_cancel(tx: Session, run_id: str) -> None:
    """Stamp the cancel request on a live run (its replica reads it at its next beat, or at once by notify)."""
    tx.execute(update(Run).where(Run.id == run_id, Run.status.in_(LIVE)).values(cancel_requested_at=utcnow()))


def extend_leases(tx: Session, boot_id: str, expires: datetime) -> list[str]:
    """Extend the leases of a worker's live runs to ``expires``; the ids of those asked to cancel."""
    tx.execute(update(Run).where(Run.boot_id == boot_id, Run.status.in_(LIVE)).values(lease_expires_at=expires))
    rows = tx.scalars(
        select(Run.id).where(Run.boot_id == boot_id, Run.status.in_(LIVE), Run.cancel_requested_at.is_not(None))
    ).all()
    return list(rows)


def expired_runs(tx: Session, now: datetime) -> list[str]:
    """Live runs whose lease ran out before ``now`` (their worker stopped renewing it), at most 500."""
    return list(tx.scalars(select(Run.id).where(and_(Run.status.in_(LIVE), Run.lease_expires_at < now)).limit(500)))


def orphaned_groups(host: str, boot_id: str) -> Sequence[Row[str, int | None]]:
    """(run id, process group) of live runs on ``host`` that other workers started and whose lease expired."""
    now = dialect.database_now(db.session())
    return db.session.execute(
        select(Run.id, Run.pgid).where(
            Run.host == host,
            Run.boot_id != boot_id,
            Run.status.in_(LIVE),
            Run.pgid.is_not(None),
            Run.lease_expires_at < now,
        )
    ).all()


# --- reading and prune -----------------------------------------------------------------------


def output_chunks(run_id: str, after_seq: int = 0, limit: int = 1000) -> list[RunOutputChunk]:
    return list(
        db.session.scalars(
            select(RunOutputChunk)
            .where(RunOutputChunk.run_id == run_id, RunOutputChunk.seq > after_seq)
            .order_by(RunOutputChunk.seq)
            .limit(limit)
        )
    )


def output_text(run_id: str) -> str:
    return "".join(db.session.connection().scalars(_OUTPUT_TEXT, {"run_id": run_id}))


def list_runs(
    *,
    owner_id: int | None,
    address: str | None,
    command: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    where: ColumnElement[bool] | None = None,
) -> tuple[list[Run], str | None]:
    """``owner_id``'s runs (None: everyone's), newest first with keyset paging, none of a command fenced
    from ``address`` (``policy.listed_runs``).

    Callers ask the policy whose runs they may list (``policy.listable_owner``), and which others
    (``where``: e.g. ``policy.awaiting_decision``).
    Returns (runs, next_cursor).  The cursor is ``<created_at ISO>|<id>`` of
    the last run of the page; a malformed cursor or a ``command`` that is not
    a name raises ValueError.
    """
    query = select(Run).order_by(Run.created_at.desc(), Run.id.desc()).where(policy.listed_runs(owner_id, address))
    if where is not None:
        query = query.where(where)
    if command:
        if not is_name(command):
            raise ValueError("command: not a command name")
        query = query.where(Run.command == command)
    if status:
        query = query.where(Run.status == status)
    if cursor:
        stamp, _, last_id = cursor.partition("|")
        try:
            at = as_utc(datetime.fromisoformat(stamp.replace("Z", "+00:00")))
        except OverflowError:  # a time zone that pushes the last year past UTC's calendar
            raise ValueError("cursor: malformed") from None
        if not is_run_id(last_id):
            raise ValueError("cursor: malformed")
        query = query.where((Run.created_at < at) | ((Run.created_at == at) & (Run.id < last_id)))
    rows = list(db.session.scalars(query.limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    next_cursor = f"{iso(page[-1].created_at)}|{page[-1].id}" if more and page else None
    return page, next_cursor


def prune(older_than: datetime, actor: Any = None) -> int:
    """Delete finished runs (and their output) created before ``older_than``; audited as runs.pruned.

    Schedule claims older than the cut go too, except each schedule's newest: that one is
    the scheduler's cursor, and without it a quiet schedule would look as if it had missed
    everything since it was loaded.
    """
    with write_transaction() as tx:
        ids = tx.scalars(select(Run.id).where(Run.status.in_(TERMINAL), Run.created_at < older_than)).all()
        for start_index in range(0, len(ids), 500):
            batch = ids[start_index : start_index + 500]
            tx.execute(delete(RunOutputChunk).where(RunOutputChunk.run_id.in_(batch)))
            tx.execute(delete(ApprovalDecision).where(ApprovalDecision.run_id.in_(batch)))
            tx.execute(delete(ApprovalRequest).where(ApprovalRequest.run_id.in_(batch)))
            tx.execute(delete(Run).where(Run.id.in_(batch)))
        claims = len(tx.execute(_old_claims(older_than).returning(ScheduleOccurrence.schedule)).all())
        audit.append(
            "runs.pruned", session=tx, actor=actor, outcome="ok",
            detail={"deleted": len(ids), "occurrences": claims, "older_than": older_than.isoformat()},
        )  # fmt: skip
    return len(ids)


def _old_claims(older_than: datetime) -> Any:
    """Claims before the cut: operators' run-now marks, and every claim with a newer calendar claim after it."""
    newer = aliased(ScheduleOccurrence)
    superseded = (
        select(newer.schedule)
        .where(
            newer.schedule == ScheduleOccurrence.schedule,
            newer.outcome != "manual",
            newer.scheduled_for > ScheduleOccurrence.scheduled_for,
        )
        .exists()
    )
    return delete(ScheduleOccurrence).where(
        ScheduleOccurrence.scheduled_for < older_than,
        (ScheduleOccurrence.outcome == "manual") | superseded,
    )
