"""``manage.py commands list|validate|reload|disable|enable``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from gateway.catalogue import CatalogueError, load_catalogue
from gateway.catalogue import switches as command_switches
from gateway.cli.common import fail, operator_actor
from gateway.runners.query_engines import url_problem

PIDFILE = "gateway.pid"


@click.group("commands")
def commands_group() -> None:
    """The command catalogue and its runtime kill switch."""


@commands_group.command("list")
@with_appcontext
def list_commands() -> None:
    """List commands: name, kind, category, state."""
    catalogue = command_switches.current_catalogue()
    disabled = command_switches.disabled_commands()
    for name, command in catalogue.commands.items():
        reason = catalogue.unavailable_reason(command)
        state = "disabled" if name in disabled else f"unavailable ({reason})" if reason else "enabled"
        click.echo(f"{name}\t{command.kind}\t{command.category}\t{state}")


@commands_group.command("validate")
@click.argument("path", required=False)
def validate(path: str | None) -> None:
    """Validate the catalogue file (default: GATEWAY_COMMANDS_FILE) without starting anything.

    A data source URL set in this environment that the query runner cannot use is an error too (exit 1,
    naming the data source and its variable, never the URL); an unset one is only a note.
    """
    from config import PROJECT_ROOT

    target = path or os.environ.get("GATEWAY_COMMANDS_FILE") or str(PROJECT_ROOT / "commands.yaml")
    try:
        catalogue = load_catalogue(target, url_check=url_problem)
    except CatalogueError as exc:
        fail(str(exc))
    if catalogue.datasource_problems:
        for name, problem in sorted(catalogue.datasource_problems.items()):
            url_env = catalogue.datasources[name].url_env
            click.echo(f"error: {target}: data source {name!r} field url_env ({url_env}): {problem}", err=True)
        raise SystemExit(1)
    counts = f"{len(catalogue.commands)} commands, {len(catalogue.datasources)} data sources"
    click.echo(f"{target}: {counts}, {len(catalogue.schedules)} schedules: valid")
    if catalogue.notifications:
        click.echo(f"  notifications: {', '.join(catalogue.notifications)}")
    for name in catalogue.unavailable():
        click.echo(f"  note: {name} is unavailable here ({catalogue.unavailable_reason(catalogue.commands[name])})")
    for name in catalogue.unconfigured_notifications():
        click.echo(f"  note: notification {name} cannot be sent from here ({catalogue.unconfigured_reason(name)})")


@commands_group.command("reload")
@with_appcontext
def reload() -> None:
    """Validate the catalogue, then ask the running gateway (its pidfile) to reload it (SIGHUP)."""
    path = current_app.config["GATEWAY_COMMANDS_FILE"]
    try:
        catalogue = load_catalogue(path, url_check=url_problem)
    except CatalogueError as exc:
        fail(str(exc))
    for name in sorted(catalogue.datasource_problems):  # the file is fine; the URL is not
        click.echo(f"warning: {catalogue.datasource_problem(name)}; its commands are unavailable", err=True)
    pidfile = Path(current_app.instance_path) / PIDFILE
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        click.echo(
            f"{path} is valid; no running gateway found at {pidfile}. Restart the replicas, or send them SIGHUP.",
            err=True,
        )
        return
    click.echo(f"{path} is valid; sent SIGHUP to the gateway (pid {pid})", err=True)


def _switch(name: str, disabled: bool, reason: str | None) -> None:
    if command_switches.current_catalogue().get(name) is None:
        fail(f"command: no command {name!r} in the catalogue")
    changed = command_switches.set_disabled(name, disabled, actor=operator_actor(), reason=reason)
    state = "disabled" if disabled else "enabled"
    click.echo(f"{name} {state}" if changed else f"{name} was already {state}", err=True)


@commands_group.command("disable")
@click.argument("name")
@click.option("--reason", default=None, help="Shown to admins; recorded in the audit.")
@with_appcontext
def disable(name: str, reason: str | None) -> None:
    """Switch a command off at runtime (the kill switch)."""
    _switch(name, True, reason)


@commands_group.command("enable")
@click.argument("name")
@with_appcontext
def enable(name: str) -> None:
    """Switch a command back on."""
    _switch(name, False, None)
