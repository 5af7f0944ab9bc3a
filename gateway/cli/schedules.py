"""``manage.py schedules list|pause|resume|run-now NAME``."""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext

from gateway import runs, schedules
from gateway.catalogue import switches as command_switches
from gateway.cli.common import fail, operator_actor
from gateway.platform.extensions import db
from gateway.platform.timeutil import rfc3339

POLL_SECONDS = 0.2


@click.group("schedules")
def schedules_group() -> None:
    """The catalogue's schedules (run by system:scheduler) and their pause switch."""


def _known(name: str) -> None:
    if name not in command_switches.current_catalogue().schedules:
        fail(f"schedule: no schedule {name!r} in the catalogue")


@schedules_group.command("list")
@with_appcontext
def list_schedules() -> None:
    """name, command, cron, time zone, state, next occurrence, last occurrence and its outcome."""
    for view in schedules.overview():
        item = view.api()
        state = "paused" if view.paused else "active"
        shown = [item["name"], item["command"], item["cron"], item["timezone"], state]
        shown += [item["next_at"] or "-", item["last_at"] or "-", item["last_outcome"] or "-"]
        click.echo("\t".join(shown))


def _pause(name: str, paused: bool) -> None:
    _known(name)
    changed = schedules.set_paused(name, paused, actor=operator_actor())
    state = "paused" if paused else "resumed"
    click.echo(f"{name} {state}" if changed else f"{name} was already {state}", err=True)


@schedules_group.command("pause")
@click.argument("name")
@with_appcontext
def pause(name: str) -> None:
    """Skip the schedule's occurrences (nothing is recorded for them) until it is resumed."""
    _pause(name, True)


@schedules_group.command("resume")
@click.argument("name")
@with_appcontext
def resume(name: str) -> None:
    """Resume from the next occurrence (the paused time is neither caught up nor recorded as missed)."""
    _pause(name, False)


@schedules_group.command("run-now")
@click.argument("name")
@with_appcontext
def run_now(name: str) -> None:
    """Run the schedule's command and params now, as system:scheduler, and wait for the result."""
    _known(name)
    try:
        started = schedules.run_now(name, operator_actor()["name"])
    except runs.RunRejected as exc:
        fail(exc.message)
    run_id = started.run.id
    click.echo(f"{run_id} started for schedule {name}", err=True)
    while True:  # this process runs it: it must not exit (and cancel it) before the end
        db.session.rollback()
        run = runs.current_run(run_id)
        if run is None or run.status in runs.TERMINAL:
            break
        time.sleep(POLL_SECONDS)
    status = run.status if run is not None else "unknown"
    finished = rfc3339(run.finished_at) if run is not None and run.finished_at else "-"
    click.echo(f"{run_id}\t{status}\t{finished}")
    if status != "succeeded":
        raise SystemExit(1)
