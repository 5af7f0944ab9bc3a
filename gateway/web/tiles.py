"""The status board's tiles: what each shows, built for one viewer.

A schedule's tile (``dashboard: true`` on the schedule) shows the newest result
of that schedule, or the viewer's own newer "Refresh now" of the same command
and params; its age, and a stale mark once it is older than two intervals.  A
``dashboard: true`` command with no such schedule keeps a manual tile: its
latest result the viewer may see, and "Run now".  Building a tile never starts
anything; which runs a tile may show is ``policy.tile_runs``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import url_for
from sqlalchemy import select

from gateway import runs
from gateway.access import policy
from gateway.catalogue import Catalogue, Command, Schedule
from gateway.catalogue.params import collect_errors, masked
from gateway.db.models import Run, RunOutputChunk, ScheduleOccurrence
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc, utcnow
from gateway.web.shared import me

TILE_LINES = 10
OWN_CANDIDATES = 5  # the viewer's newest runs of the command looked at for a matching refresh


@dataclass
class Tile:
    command: Command
    latest: Run | None  # the newest finished run this tile shows
    in_flight: Run | None
    lines: list[str]
    schedule: Schedule | None = None
    message: str | None = None
    stale: bool = False
    age: timedelta | None = None

    @property
    def key(self) -> str:
        return f"schedule-{self.schedule.name}" if self.schedule else self.command.name

    @property
    def title(self) -> str:
        return self.command.title

    @property
    def refresh_url(self) -> str:
        if self.schedule is not None:
            return url_for("web.schedule_refresh", name=self.schedule.name)
        return url_for("web.tile_refresh", name=self.command.name)

    @property
    def age_text(self) -> str:
        if self.age is None:
            return ""
        minutes = int(self.age.total_seconds() // 60)
        if minutes < 1:
            return "less than a minute ago"
        if minutes < 120:
            return f"{minutes} min ago"
        return f"{minutes // 60} h ago"


def _last_lines(run_id: str) -> list[str]:
    rows = db.session.scalars(
        select(RunOutputChunk).where(RunOutputChunk.run_id == run_id).order_by(RunOutputChunk.seq.desc()).limit(40)
    ).all()
    text = "".join(chunk.text for chunk in reversed(rows))
    return text.splitlines()[-TILE_LINES:]


def _finish(tile: Tile) -> Tile:
    latest = tile.latest
    if latest is not None and not latest.result:
        tile.lines = _last_lines(latest.id)
    if latest is not None and latest.finished_at is not None:
        tile.age = utcnow() - as_utc(latest.finished_at)
    return tile


def manual_tile(command: Command, message: str | None = None) -> Tile:
    """A dashboard command without a schedule: its latest result the viewer may see."""
    base = select(Run).where(policy.tile_runs(me(), command))
    latest = db.session.scalars(
        base.where(Run.status.in_(runs.TERMINAL)).order_by(Run.finished_at.desc()).limit(1)
    ).first()
    in_flight = db.session.scalars(
        base.where(Run.status.in_(runs.LIVE)).order_by(Run.created_at.desc()).limit(1)
    ).first()
    return _finish(Tile(command=command, latest=latest, in_flight=in_flight, lines=[], message=message))


def schedule_tile(schedule: Schedule, command: Command, message: str | None = None) -> Tile:
    """The schedule's newest result, or the viewer's own newer refresh of the same command and params."""
    visible = policy.tile_runs(me(), command)
    of_schedule = select(ScheduleOccurrence.run_id).where(ScheduleOccurrence.schedule == schedule.name)
    scheduled = select(Run).where(visible, Run.id.in_(of_schedule))
    latest = db.session.scalars(
        scheduled.where(Run.status.in_(runs.TERMINAL)).order_by(Run.finished_at.desc()).limit(1)
    ).first()
    in_flight = db.session.scalars(
        scheduled.where(Run.status.in_(runs.LIVE)).order_by(Run.created_at.desc()).limit(1)
    ).first()
    own = _own_refresh(schedule, command)
    if own is not None and (latest is None or as_utc(own.finished_at) > as_utc(latest.finished_at)):  # type: ignore[arg-type]
        latest = own
    tile = Tile(command=command, latest=latest, in_flight=in_flight, lines=[], schedule=schedule, message=message)
    now = utcnow()
    tile.stale = latest is None or latest.finished_at is None or (
        now - as_utc(latest.finished_at) > 2 * schedule.interval(now)
    )  # fmt: skip
    return _finish(tile)


def _own_refresh(schedule: Schedule, command: Command) -> Run | None:
    """The viewer's newest finished run of the command with the schedule's params, if any."""
    values, errors = collect_errors(command, schedule.params, "json")
    if errors:
        return None
    wanted = json.loads(json.dumps(masked(command, values), default=str))  # as the run row stores them
    candidates = db.session.scalars(
        select(Run)
        .where(Run.user_id == me().id, Run.command == command.name, Run.status.in_(runs.TERMINAL))
        .order_by(Run.finished_at.desc())
        .limit(OWN_CANDIDATES)
    )
    return next((run for run in candidates if run.params == wanted), None)


def board(catalogue: Catalogue, visible: list[Command]) -> list[Tile]:
    """The viewer's tiles: each dashboard schedule of a command they may use, then manual tiles."""
    usable = {command.name: command for command in visible}
    tiles: list[Tile] = []
    scheduled_commands = set()
    for name in sorted(catalogue.schedules):
        schedule = catalogue.schedules[name]
        if schedule.dashboard and schedule.command in usable:
            tiles.append(schedule_tile(schedule, usable[schedule.command]))
            scheduled_commands.add(schedule.command)
    tiles.extend(manual_tile(c) for c in visible if c.dashboard and c.name not in scheduled_commands)
    return tiles


def fingerprint(tiles: list[Any]) -> str:
    """What the board's ETag is made of: each tile's runs, state and minute-grained age."""
    parts = [
        (t.key, t.latest.id if t.latest else None, t.latest.status if t.latest else None,
         t.in_flight.id if t.in_flight else None, t.stale, t.age_text)
        for t in tiles
    ]  # fmt: skip
    return repr(parts)
