"""The dashboard: status tiles, the commands this user may run, and their recent runs.

Tiles show the latest result of each ``dashboard: true`` report.  Refreshing a
tile starts the report through ``runs.start`` like any run, so the command's
``cache_seconds`` decides whether it really executes: fifty open dashboards
refreshing at once join one run or reuse one result.  The page's script
refreshes tiles on its own with ``X-Gateway-Background: 1``, which does not
count as user activity for the session idle timer.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from gateway import runs
from gateway.access import policy
from gateway.catalogue import Command
from gateway.catalogue import switches as command_switches
from gateway.db.models import Run, RunOutputChunk
from gateway.identity.sessions import is_background_request
from gateway.platform.addresses import client_address
from gateway.platform.extensions import db
from gateway.platform.wakeup import wakeups
from gateway.runs.callers import current_caller
from gateway.web.blueprint import bp
from gateway.web.shared import STATUS_LABELS, me

TILE_ROWS = 8
TILE_LINES = 10
MIN_TILE_REFRESH_SECONDS = 15
REFRESH_WAIT_SECONDS = 3.0


@dataclass
class Tile:
    command: Command
    latest: Run | None  # the newest finished run this user may see
    in_flight: Run | None
    lines: list[str]
    message: str | None = None

    @property
    def refresh_seconds(self) -> int:
        return int(max(MIN_TILE_REFRESH_SECONDS, self.command.cache_seconds))


def _visible_runs(command: Command) -> Any:
    """Runs of this command the tile may show this user (``policy.tile_runs``)."""
    return select(Run).where(policy.tile_runs(me(), command))


def _last_lines(run_id: str) -> list[str]:
    rows = db.session.scalars(
        select(RunOutputChunk).where(RunOutputChunk.run_id == run_id).order_by(RunOutputChunk.seq.desc()).limit(40)
    ).all()
    text = "".join(chunk.text for chunk in reversed(rows))
    return text.splitlines()[-TILE_LINES:]


def build_tile(command: Command, message: str | None = None) -> Tile:
    base = _visible_runs(command)
    latest = db.session.scalars(
        base.where(Run.status.in_(runs.TERMINAL)).order_by(Run.finished_at.desc()).limit(1)
    ).first()
    in_flight = db.session.scalars(
        base.where(Run.status.in_(runs.LIVE)).order_by(Run.created_at.desc()).limit(1)
    ).first()
    lines = _last_lines(latest.id) if latest is not None and not latest.result else []
    return Tile(command=command, latest=latest, in_flight=in_flight, lines=lines, message=message)


def wait_briefly(run_id: str, seconds: float) -> None:
    """Give a quick report a moment to finish so the refreshed tile shows its result.

    Woken by the engine (no polling); the database connection is released while waiting.
    """
    deadline = time.monotonic() + seconds
    while True:
        seen = wakeups.version(run_id)
        db.session.rollback()  # a fresh snapshot, and the connection goes back to the pool
        status = db.session.scalar(select(Run.status).where(Run.id == run_id))
        remaining = deadline - time.monotonic()
        if status not in runs.LIVE or remaining <= 0:
            return
        db.session.rollback()
        wakeups.wait(run_id, seen, remaining)


def group_by_category(commands: list[Command]) -> list[tuple[str, list[Command]]]:
    groups: dict[str, list[Command]] = defaultdict(list)
    for command in commands:
        groups[command.category].append(command)
    return [(category, sorted(items, key=lambda c: c.title.lower())) for category, items in sorted(groups.items())]


@bp.route("/")
def dashboard() -> str:
    catalogue = command_switches.current_catalogue()
    address = client_address()
    visible = policy.visible_commands(me(), catalogue, address)
    disabled = command_switches.disabled_commands()
    blocked = {c.name: "disabled" for c in visible if c.name in disabled}
    blocked.update({c.name: "unavailable" for c in visible if catalogue.unavailable_reason(c)})
    recent, _ = runs.list_runs(owner_id=me().id, address=address, limit=10)  # my own, admins' included
    return render_template(
        "dashboard.html",
        tiles=[build_tile(c) for c in visible if c.dashboard],
        categories=group_by_category(visible),
        blocked=blocked,
        recent=recent,
        titles={name: c.title for name, c in catalogue.commands.items()},
        statuses=STATUS_LABELS,
        max_rows=TILE_ROWS,
    )


def dashboard_command_or_404(name: str) -> Command:
    """A tile exists for a command the policy lets this user use that is a dashboard report."""
    command = policy.command_for(me(), name, client_address())
    if not command.dashboard:
        abort(404)
    return command


@bp.route("/tiles/<name:name>")
def tile(name: str) -> str:
    """One tile as an HTML fragment, for the page's own refreshes."""
    return render_template("_tile.html", tile=build_tile(dashboard_command_or_404(name)), max_rows=TILE_ROWS)


@bp.route("/tiles/<name:name>/refresh", methods=["POST"])
def tile_refresh(name: str) -> Response | str:
    """Start the report (through the cache); the page's script gets the fragment, a plain form a redirect."""
    command = dashboard_command_or_404(name)
    message = None
    try:
        started = runs.start(name, {}, current_caller(), source="form")
    except runs.RunRejected as exc:
        message = exc.message
    else:
        wait_briefly(started.run.id, REFRESH_WAIT_SECONDS)
    if is_background_request():
        return render_template("_tile.html", tile=build_tile(command, message), max_rows=TILE_ROWS)
    if message:
        flash(f"{command.title}: {message}")
    return redirect(url_for("web.dashboard") + f"#tile-{name}", 303)
