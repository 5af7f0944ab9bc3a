"""The dashboard: the status board, the commands this user may run, and their recent runs.

Looking at the board never starts a run.  Schedules produce the reports
(``gateway.schedules``, as ``system:scheduler``); the page's script refreshes
the whole board with ONE conditional request (``GET /tiles`` with
``If-None-Match``, answered 304 while nothing changed, marked
``X-Gateway-Background: 1`` so it does not count as activity for the idle
timer).  "Refresh now" on a schedule's tile and "Run now" on a manual tile are
explicit runs by the viewer through ``runs.start``, so the command's
``cache_seconds`` limits them.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from gateway import runs
from gateway.access import policy
from gateway.catalogue import Command, Schedule
from gateway.catalogue import switches as command_switches
from gateway.catalogue.texts import localized
from gateway.db.models import Run
from gateway.identity.sessions import is_background_request
from gateway.platform.addresses import client_address
from gateway.platform.extensions import db
from gateway.platform.phrases import on_page
from gateway.platform.wakeup import wakeups
from gateway.runs.callers import current_caller
from gateway.web import tiles as board_tiles
from gateway.web.blueprint import bp
from gateway.web.shared import STATUS_LABELS, me

TILE_ROWS = 8
REFRESH_WAIT_SECONDS = 3.0
FILTER_FROM = 12  # the commands' filter box appears when there are more cards than this


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


def latest_runs(user_id: int, names: list[str]) -> dict[str, Run]:
    """The viewer's own newest run of each command (one query, whatever the number of cards)."""
    if not names:
        return {}
    ranked = (
        select(
            Run.id,
            func.row_number().over(partition_by=Run.command, order_by=Run.created_at.desc()).label("newest"),
        )
        .where(Run.user_id == user_id, Run.command.in_(sorted(names)))
        .subquery()
    )
    newest = select(ranked.c.id).where(ranked.c.newest == 1)
    return {run.command: run for run in db.session.scalars(select(Run).where(Run.id.in_(newest)))}


def _etag(shown: list[board_tiles.Tile]) -> str:
    return hashlib.sha256(board_tiles.fingerprint(shown).encode("utf-8")).hexdigest()[:32]


def _board() -> list[board_tiles.Tile]:
    catalogue = command_switches.current_catalogue()
    return board_tiles.board(catalogue, policy.visible_commands(me(), catalogue, client_address()))


@bp.route("/")
def dashboard() -> str:
    catalogue = command_switches.current_catalogue()
    address = client_address()
    visible = policy.visible_commands(me(), catalogue, address)
    disabled = command_switches.disabled_commands()
    blocked = {c.name: "disabled" for c in visible if c.name in disabled}
    blocked.update({c.name: "unavailable" for c in visible if catalogue.unavailable_reason(c)})
    recent, _more = runs.list_runs(owner_id=me().id, address=address, limit=10)  # my own, admins' included
    shown = board_tiles.board(catalogue, visible)
    return render_template(
        "dashboard.html",
        tiles=board_tiles.fill_lines(shown),
        etag=_etag(shown),
        refresh_seconds=current_app.config["DASHBOARD_REFRESH_SECONDS"],
        categories=group_by_category(visible),
        command_count=len(visible),
        filter_from=FILTER_FROM,
        latest=latest_runs(me().id, [c.name for c in visible]),
        blocked=blocked,
        recent=recent,
        titles={name: c.title for name, c in catalogue.commands.items()},
        statuses=STATUS_LABELS,
        max_rows=TILE_ROWS,
    )


@bp.route("/tiles")
def tiles() -> Response:
    """Every tile of the board as one fragment: the page's one conditional refresh (ETag -> 304).

    The ETag is computed before the output lines are read: a 304 costs the board's few queries only.
    """
    shown = _board()
    digest = _etag(shown)
    if request.if_none_match.contains(digest):
        response = make_response("", 304)
    else:
        fragment = render_template("_tiles.html", tiles=board_tiles.fill_lines(shown), max_rows=TILE_ROWS)
        response = make_response(fragment)
    response.set_etag(digest)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def dashboard_command_or_404(name: str) -> Command:
    """A manual tile exists for a command the policy lets this user use that is a dashboard report."""
    command = policy.command_for(me(), name, client_address())
    if not command.dashboard:
        abort(404)
    return command


def dashboard_schedule_or_404(name: str) -> tuple[Schedule, Command]:
    """A schedule's tile exists for a dashboard schedule whose command the policy lets this user use."""
    schedule = command_switches.current_catalogue().schedules.get(name)
    if schedule is None or not schedule.dashboard:
        abort(404)
    return schedule, policy.command_for(me(), schedule.command, client_address())


@bp.route("/tiles/<name:name>")
def tile(name: str) -> str:
    """One manual tile as an HTML fragment."""
    command = dashboard_command_or_404(name)
    [shown] = board_tiles.fill_lines([board_tiles.manual_tile(command)])
    return render_template("_tile.html", tile=shown, max_rows=TILE_ROWS)


def _run_for_tile(name: str, params: dict[str, object], title: str) -> str | None:
    """Start an explicit run for the viewer (through the cache); the message of a refusal, else None."""
    try:
        started = runs.start(name, params, current_caller(), source="json" if params else "form")
    except runs.RunRejected as exc:
        shown = on_page(exc.message)
        if not is_background_request():
            flash(_("%(title)s: %(message)s", title=localized(title), message=shown))
        return shown
    wait_briefly(started.run.id, REFRESH_WAIT_SECONDS)
    return None


@bp.route("/tiles/<name:name>/refresh", methods=["POST"])
def tile_refresh(name: str) -> Response | str:
    """ "Run now" on a manual tile: the viewer's own run of the report, limited by its cache."""
    command = dashboard_command_or_404(name)
    message = _run_for_tile(name, {}, command.title)
    if is_background_request():
        [tile] = board_tiles.fill_lines([board_tiles.manual_tile(command, message)])
        return render_template("_tile.html", tile=tile, max_rows=TILE_ROWS)
    return redirect(url_for("web.dashboard") + f"#tile-{name}", 303)


@bp.route("/schedules/<name:name>/refresh", methods=["POST"])
def schedule_refresh(name: str) -> Response | str:
    """ "Refresh now" on a schedule's tile: the schedule's command and params, run by the viewer."""
    schedule, command = dashboard_schedule_or_404(name)
    message = _run_for_tile(command.name, dict(schedule.params), command.title)
    if is_background_request():
        [tile] = board_tiles.fill_lines([board_tiles.schedule_tile(schedule, command, message)])
        return render_template("_tile.html", tile=tile, max_rows=TILE_ROWS)
    return redirect(url_for("web.dashboard") + f"#tile-schedule-{name}", 303)
