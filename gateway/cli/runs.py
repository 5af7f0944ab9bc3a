"""``manage.py runs list|cancel|reap|prune``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import click
from flask.cli import with_appcontext

from gateway import runs
from gateway.access import policy
from gateway.cli.common import fail, operator_actor
from gateway.platform.timeutil import rfc3339, utcnow


@dataclass(frozen=True)
class OperatorUser:
    """The operator at the CLI acts with admin rights, audited as cli:<os user>."""

    username: str
    id: None = None
    is_admin: bool = True
    is_active: bool = True
    is_authenticated: bool = True


def _operator_caller() -> runs.Caller:
    return runs.Caller(user=OperatorUser(username=operator_actor()["name"]), source_ip=None)  # not over the network


@click.group("runs")
def runs_group() -> None:
    """Command runs."""


@runs_group.command("list")
@click.option("--status", default=None, help="Only runs in this state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@with_appcontext
def list_runs(status: str | None, limit: int) -> None:
    """Recent runs, newest first."""
    operator = _operator_caller()
    page, _ = runs.list_runs(
        owner_id=policy.listable_owner(operator.user), address=operator.source_ip, status=status, limit=limit
    )
    for run in page:
        click.echo(f"{run.id}\t{run.command}\t{run.status}\t{run.username}\t{rfc3339(run.created_at)}")


@runs_group.command("cancel")
@click.argument("run_id")
@with_appcontext
def cancel(run_id: str) -> None:
    """Ask a run to stop (its replica sends SIGTERM, then SIGKILL, within a heartbeat)."""
    try:
        run = runs.cancel(run_id, _operator_caller())
    except runs.RunRejected as exc:
        fail(exc.message)
    click.echo(f"cancel requested for {run.id} ({run.status})", err=True)


@runs_group.command("reap")
@with_appcontext
def reap() -> None:
    """Mark runs whose worker stopped renewing their lease as lost."""
    lost = runs.reap_expired()
    click.echo(f"{len(lost)} run(s) marked lost", err=True)
    for run_id in lost:
        click.echo(run_id)


@runs_group.command("prune")
@click.option("--older-than-days", required=True, type=click.IntRange(1, 36_500))
@with_appcontext
def prune(older_than_days: int) -> None:
    """Delete finished runs and their output older than N days (the audit keeps excerpt and digest)."""
    deleted = runs.prune(utcnow() - timedelta(days=older_than_days), actor=operator_actor())
    click.echo(f"{deleted} run(s) pruned", err=True)
