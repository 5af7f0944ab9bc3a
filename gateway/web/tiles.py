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
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import url_for
from sqlalchemy import func, select

from gateway import runs
from gateway.access import policy
from gateway.catalogue import Catalogue, Command, Schedule
from gateway.catalogue.values import collect_errors, masked
from gateway.db.models import Run, RunOutputChunk, ScheduleOccurrence
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc, utcnow
from gateway.web.shared import age_text, me

TILE_LINES = 10
LAST_CHUNKS = 40  # output chunks read per tile for its last lines
RECENT_OCCURRENCES = 5  # a schedule's newest occurrences looked at for its newest result
OWN_CANDIDATES = 5  # the viewer's newest runs per command looked at for a matching refresh
REMEMBERED_LINES = 1024  # finished runs whose last lines this process keeps


class _FinishedLines:
    """The last lines of finished runs, by run id, the least recently shown dropped first.

    A finished run's output never changes, so a board viewed again and again
    reads each result's output once per process, not once per view.
    """

    def __init__(self, size: int):
        self.size = size
        self._lines: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str) -> list[str] | None:
        with self._lock:
            lines = self._lines.get(run_id)
            if lines is not None:
                self._lines.move_to_end(run_id)
            return lines

    def put(self, run_id: str, lines: list[str]) -> None:
        with self._lock:
            self._lines[run_id] = lines
            self._lines.move_to_end(run_id)
            while len(self._lines) > self.size:
                self._lines.popitem(last=False)


finished_lines = _FinishedLines(REMEMBERED_LINES)


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


def fill_lines(tiles: list[Tile]) -> list[Tile]:
    """The last output lines of each tile's result that has no table: one query for the board's unseen results."""
    shown = [(tile, tile.latest) for tile in tiles if tile.latest is not None and not tile.latest.result]
    for tile, run in shown:
        tile.lines = finished_lines.get(run.id) or []
    wanted = {run.id for tile, run in shown if not tile.lines}
    if not wanted:
        return tiles
    ranked = select(
        RunOutputChunk.run_id,
        RunOutputChunk.text,
        func.row_number().over(partition_by=RunOutputChunk.run_id, order_by=RunOutputChunk.seq.desc()).label("newest"),
    ).where(RunOutputChunk.run_id.in_(sorted(wanted)))
    ranked_sub = ranked.subquery()
    rows = db.session.execute(
        select(ranked_sub.c.run_id, ranked_sub.c.text)
        .where(ranked_sub.c.newest <= LAST_CHUNKS)
        .order_by(ranked_sub.c.run_id, ranked_sub.c.newest.desc())
    )
    texts: dict[str, list[str]] = {}
    for run_id, text in rows:
        texts.setdefault(run_id, []).append(text)
    for tile, run in shown:
        if run.id in texts:
            tile.lines = "".join(texts[run.id]).splitlines()[-TILE_LINES:]
            if run.status in runs.TERMINAL:
                finished_lines.put(run.id, tile.lines)
    return tiles


def _aged(tile: Tile, now: datetime) -> Tile:
    latest = tile.latest
    if latest is not None and latest.finished_at is not None:
        tile.age = now - as_utc(latest.finished_at)
    if tile.schedule is not None:
        tile.stale = tile.age is None or tile.age > 2 * tile.schedule.interval(now)
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
    tile = Tile(command=command, latest=latest, in_flight=in_flight, lines=[], message=message)
    return _aged(tile, utcnow())


def schedule_tile(schedule: Schedule, command: Command, message: str | None = None) -> Tile:
    """One schedule's tile (after its "Refresh now")."""
    [tile] = schedule_tiles([(schedule, command)])
    tile.message = message
    return tile


def schedule_tiles(pairs: list[tuple[Schedule, Command]]) -> list[Tile]:
    """Each schedule's newest result, or the viewer's own newer refresh of the same command and params.

    A fixed number of queries whatever the number of tiles: the newest occurrences of every
    schedule, their runs the viewer may see (``policy.board_runs``), the viewer's own newest runs.
    """
    if not pairs:
        return []
    user, now = me(), utcnow()
    names = [schedule.name for schedule, _ in pairs]
    ranked = (
        select(
            ScheduleOccurrence.schedule,
            ScheduleOccurrence.run_id,
            func.row_number()
            .over(partition_by=ScheduleOccurrence.schedule, order_by=ScheduleOccurrence.scheduled_for.desc())
            .label("newest"),
        )
        .where(ScheduleOccurrence.schedule.in_(names), ScheduleOccurrence.run_id.is_not(None))
        .subquery()
    )
    recent = db.session.execute(
        select(ranked.c.schedule, ranked.c.run_id).where(ranked.c.newest <= RECENT_OCCURRENCES)
    ).all()
    commands = sorted({command.name for _, command in pairs})
    ids = sorted({run_id for _, run_id in recent})
    found = {}
    if ids:
        visible = select(Run).where(Run.id.in_(ids), policy.board_runs(user, commands))
        found = {run.id: run for run in db.session.scalars(visible)}
    own = db.session.scalars(
        select(Run)
        .where(Run.user_id == user.id, Run.command.in_(commands), Run.status.in_(runs.TERMINAL))
        .order_by(Run.finished_at.desc())
        .limit(OWN_CANDIDATES * len(commands))
    ).all()
    tiles = []
    for schedule, command in pairs:
        mine = [found[run_id] for name, run_id in recent if name == schedule.name and run_id in found]
        ended = [run for run in mine if run.status in runs.TERMINAL and run.finished_at is not None]
        latest = max(ended, key=lambda run: as_utc(run.finished_at), default=None)  # type: ignore[arg-type]
        live = [run for run in mine if run.status in runs.LIVE]
        in_flight = max(live, key=lambda run: as_utc(run.created_at), default=None)
        refresh = _own_refresh(schedule, command, own)
        if refresh is not None and _newer(refresh, latest):
            latest = refresh
        tile = Tile(command=command, latest=latest, in_flight=in_flight, lines=[], schedule=schedule)
        tiles.append(_aged(tile, now))
    return tiles


def _newer(run: Run, than: Run | None) -> bool:
    if run.finished_at is None:
        return False
    return than is None or than.finished_at is None or as_utc(run.finished_at) > as_utc(than.finished_at)


def _own_refresh(schedule: Schedule, command: Command, own: Sequence[Run]) -> Run | None:
    """Among the viewer's newest runs, the newest of the command with the schedule's params, if any."""
    values, errors = collect_errors(command, schedule.params, "json")
    if errors:
        return None
    wanted = json.loads(json.dumps(masked(command, values), default=str))  # as the run row stores them
    return next((run for run in own if run.command == command.name and run.params == wanted), None)


def board(catalogue: Catalogue, visible: list[Command]) -> list[Tile]:
    """The viewer's tiles (without their output lines: ``fill_lines``, once the board is to be sent).

    Each dashboard schedule of a command they may use, then manual tiles for dashboard
    commands that no dashboard schedule covers.
    """
    usable = {command.name: command for command in visible}
    pairs = [
        (catalogue.schedules[name], usable[catalogue.schedules[name].command])
        for name in sorted(catalogue.schedules)
        if catalogue.schedules[name].dashboard and catalogue.schedules[name].command in usable
    ]
    covered = {command.name for _, command in pairs}
    return schedule_tiles(pairs) + [manual_tile(c) for c in visible if c.dashboard and c.name not in covered]


def fingerprint(tiles: list[Any]) -> str:
    """What the board's ETag is made of: each tile's runs, state and its age as the page words it."""
    parts = [
        (t.key, t.latest.id if t.latest else None, t.latest.status if t.latest else None,
         t.in_flight.id if t.in_flight else None, t.stale, age_text(t.age) if t.age is not None else "")
        for t in tiles
    ]  # fmt: skip
    return repr(parts)
