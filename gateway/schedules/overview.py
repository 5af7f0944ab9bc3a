"""What the admin page, the API and the CLI say about each schedule: one shape, built here.

For each schedule of the loaded catalogue: its definition, whether it is paused,
the next occurrence (None while paused), the newest claimed one, what that did
(the run's state, or ``rejected`` / ``missed``) and the recent durations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from gateway.catalogue import Schedule
from gateway.catalogue.switches import current_catalogue
from gateway.db.models import Run, ScheduleOccurrence
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc, utcnow
from gateway.schedules import store

TREND = 10  # durations shown per schedule


@dataclass
class ScheduleView:
    schedule: Schedule
    paused: bool
    next_at: datetime | None
    last_at: datetime | None = None
    last_outcome: str | None = None
    last_run_id: str | None = None
    durations_ms: list[int] = field(default_factory=list)

    def api(self) -> dict[str, Any]:
        """The API's item (DESIGN.md, "Schedules and the status board")."""
        return {
            "name": self.schedule.name,
            "command": self.schedule.command,
            "cron": self.schedule.cron,
            "timezone": self.schedule.timezone,
            "paused": self.paused,
            "dashboard": self.schedule.dashboard,
            "next_at": _iso(self.next_at),
            "last_at": _iso(self.last_at),
            "last_outcome": self.last_outcome,
            "last_run_id": self.last_run_id,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def outcome(claimed: str, status: str | None) -> str:
    """What an occurrence did: its run's state, or why there is none."""
    return status if claimed in ("started", "manual") and status is not None else claimed


def overview(names: Iterable[str] | None = None) -> list[ScheduleView]:
    """Each schedule of the loaded catalogue (or those of ``names``), in name order."""
    schedules = current_catalogue().schedules
    wanted = sorted(schedules if names is None else [n for n in names if n in schedules])
    states = store.states()
    now = utcnow()
    views = []
    for name in wanted:
        schedule = schedules[name]
        state = states.get(name)
        paused = bool(state is not None and state.paused)
        view = ScheduleView(schedule, paused, None if paused else schedule.next_after(now))
        recent = store.recent_occurrences(name, TREND)
        if recent:
            view.last_at, view.last_run_id = recent[0].scheduled_for, recent[0].run_id
            view.last_outcome = outcome(recent[0].outcome, recent[0].status)
            view.durations_ms = [row.duration_ms for row in reversed(recent) if row.duration_ms is not None]
        views.append(view)
    return views


def last_successes() -> dict[str, float]:
    """Each loaded schedule's newest successful run's end (Unix time), for the metrics' scrape."""
    loaded = set(current_catalogue().schedules)
    statement = (
        select(ScheduleOccurrence.schedule, func.max(Run.finished_at))
        .join(Run, Run.id == ScheduleOccurrence.run_id)
        .where(Run.status == "succeeded")
        .group_by(ScheduleOccurrence.schedule)
    )
    rows = db.session.execute(statement).all()
    db.session.rollback()
    return {name: as_utc(at).timestamp() for name, at in rows if name in loaded and at is not None}


def runs_of(name: str, *, before: datetime | None = None, limit: int = 50) -> list[tuple[Run, datetime]]:
    """The runs of a schedule with their occurrence, newest first (``before``: older occurrences only, paging)."""
    statement = (
        select(Run, ScheduleOccurrence.scheduled_for)
        .join(ScheduleOccurrence, ScheduleOccurrence.run_id == Run.id)
        .where(ScheduleOccurrence.schedule == name)
        .order_by(ScheduleOccurrence.scheduled_for.desc())
        .limit(limit)
    )
    if before is not None:
        statement = statement.where(ScheduleOccurrence.scheduled_for < before)
    return [(run, at) for run, at in db.session.execute(statement)]
