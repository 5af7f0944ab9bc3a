"""Every statement on the schedules' tables: states (since, paused), claims, missed gaps, pause and resume.

A claim is ``insert_unless_present`` on ``schedule_occurrences``' primary key:
an insert that does nothing (never fails, so never aborts its transaction)
when another replica claimed the occurrence first.  It is always made inside
the write unit that records what the occurrence did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from gateway import audit
from gateway.access.policy import SCHEDULER
from gateway.db import dialect
from gateway.db.models import Run, ScheduleOccurrence, ScheduleState
from gateway.db.units import WriteUnit, core, rows_matched, write_connection, write_transaction
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

_OCCURRENCES = ScheduleOccurrence.__table__
_STATES = ScheduleState.__table__
SYSTEM_ACTOR = {"id": None, "name": SCHEDULER.username}


def claim(tx: WriteUnit, schedule: str, scheduled_for: datetime, run_id: str | None, outcome: str) -> bool:
    """Claim one occurrence inside ``tx``; False when it was claimed already (then nothing was written)."""
    statement = (
        dialect.insert_unless_present(core(tx), ScheduleOccurrence, ["schedule", "scheduled_for"])
        .values(schedule=schedule, scheduled_for=scheduled_for, outcome=outcome, run_id=run_id, claimed_at=utcnow())
        .returning(_OCCURRENCES.c.schedule)  # a row back only when inserted (rowcount is not reliable on every driver)
    )
    return core(tx).execute(statement).first() is not None


def claimer(
    schedule: str, scheduled_for: datetime, manual: bool = False
) -> Callable[[Connection, str | None, str], bool]:
    """The claim admission makes in its transaction (``runs.Occurrence.claim``).

    A ``manual`` one (an operator's run-now) is kept out of the calendar: ``last_claimed``
    ignores it, so it can never make the scheduler skip a due occurrence.
    """

    def claim_in(tx: Connection, run_id: str | None, outcome: str) -> bool:
        return claim(tx, schedule, scheduled_for, run_id, "manual" if manual and outcome == "started" else outcome)

    return claim_in


def ensure_states(names: Iterable[str], now: datetime) -> None:
    """A row for every schedule not seen before, counting from ``now`` (nothing earlier is caught up)."""
    known = set(db.session.scalars(select(_STATES.c.schedule)))
    missing = sorted(set(names) - known)
    db.session.rollback()  # end the read before the write unit
    if not missing:
        return
    with write_connection() as tx:
        for name in missing:
            tx.execute(
                dialect.insert_unless_present(tx, ScheduleState, ["schedule"]).values(
                    schedule=name, since=now, paused=False, changed_at=now
                )
            )


def restart(names: Iterable[str], now: datetime) -> None:
    """Count these schedules from ``now`` (a reload brought them back); never moves ``since`` backwards."""
    with write_connection() as tx:
        tx.execute(
            update(_STATES).where(_STATES.c.schedule.in_(sorted(names)), _STATES.c.since < now).values(since=now)
        )


def states() -> dict[str, Any]:
    """Schedule name -> its state row (``since``, ``paused``, ``changed_at``, ``changed_by``)."""
    return {row.schedule: row for row in db.session.execute(select(_STATES))}


def last_claimed() -> dict[str, datetime]:
    """Schedule name -> its newest claimed occurrence (whatever it did)."""
    statement = (
        select(_OCCURRENCES.c.schedule, func.max(_OCCURRENCES.c.scheduled_for))
        .where(_OCCURRENCES.c.outcome != "manual")
        .group_by(_OCCURRENCES.c.schedule)
    )
    return {name: at for name, at in db.session.execute(statement)}


def record_missed(schedule: str, since: datetime, missed: Callable[[datetime], list[datetime]]) -> int:
    """Record the gap of occurrences ``missed(cursor)`` lists once (``schedule.missed``); how many it held.

    The schedule's lock serialises replicas, and the cursor is read again under it: a
    replica that comes second finds the gap claimed (its last instant) and records nothing.
    """
    with write_connection() as tx:
        dialect.transaction_lock(tx, f"schedule:{schedule}")
        newest = tx.execute(
            select(func.max(_OCCURRENCES.c.scheduled_for)).where(
                _OCCURRENCES.c.schedule == schedule, _OCCURRENCES.c.outcome != "manual"
            )
        ).scalar()
        gap = missed(max(since, newest) if newest is not None else since)
        if not gap or not claim(tx, schedule, gap[-1], None, "missed"):
            return 0
        audit.append(
            "schedule.missed", session=tx, actor=SYSTEM_ACTOR, outcome="missed",
            detail={"schedule": schedule, "count": len(gap), "first": gap[0].isoformat(), "last": gap[-1].isoformat()},
        )  # fmt: skip
    return len(gap)


def set_paused(name: str, paused: bool, *, actor: Any = None, **fields: Any) -> bool:
    """Pause or resume (audited); resuming counts from now, so the paused time is not caught up or missed."""
    now = utcnow()
    with write_transaction() as tx:
        tx.execute(
            dialect.insert_unless_present(core(tx), ScheduleState, ["schedule"]).values(
                schedule=name, since=now, paused=False, changed_at=now
            )
        )
        changes: dict[str, Any] = {"paused": paused, "changed_at": now, "changed_by": (actor or {}).get("name")}
        if not paused:
            changes["since"] = now
        result = tx.execute(
            update(_STATES).where(_STATES.c.schedule == name, _STATES.c.paused != paused).values(**changes)
        )
        if rows_matched(result) == 0:
            return False
        audit.append(
            "admin.schedule_paused" if paused else "admin.schedule_resumed",
            session=tx, actor=actor, outcome="ok", detail={"schedule": name}, **fields,
        )  # fmt: skip
    return True


def recent_occurrences(name: str, limit: int = 20) -> list[Any]:
    """The newest claimed occurrences of a schedule with their run's state (None: no run)."""
    statement = (
        select(_OCCURRENCES, Run.status, Run.finished_at, Run.duration_ms)
        .outerjoin(Run, Run.id == _OCCURRENCES.c.run_id)
        .where(_OCCURRENCES.c.schedule == name)
        .order_by(_OCCURRENCES.c.scheduled_for.desc())
        .limit(limit)
    )
    return list(db.session.execute(statement))
