"""Who is told of a run's end: the notifications its command and its schedule name, by outcome or by change.

``ending`` calls ``notify_end`` inside the write unit that records the
terminal state and ``run.finished``; the deliveries join that unit
(``deliveries.enqueue``), so they exist exactly when the end committed, once
per run (the terminal write itself happens once).  Without a ``notify:`` on
the command and on any schedule, a run's end costs one dictionary lookup here.

The approval flow tells through the same outbox (``notify_approvers``,
``notify_requester``): a request's ``approval.notify`` to the approval's
``notify:`` names, and its decision the same way, each in the transaction of
the change.

``changed`` (DESIGN.md): the outcome, or the output / result digest
(``output_sha256``), differs from the previous finished run of the same
schedule, or, for a run that is not a schedule's, of the same command with the
same params; a first run is not a change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.engine import Connection

from gateway import deliveries
from gateway.access.policy import NOTIFIER
from gateway.catalogue import Catalogue, Command
from gateway.catalogue.switches import current_catalogue
from gateway.db.models import Run, ScheduleOccurrence
from gateway.platform.urls import external_url
from gateway.runs.model import TERMINAL, Job
from gateway.runs.shape import run_view

_RUNS = Run.__table__
_OCCURRENCES = ScheduleOccurrence.__table__
EVENT = "run.finished"
APPROVAL_REQUESTED = "approval.notify"  # DESIGN.md: approvers are told through the outbox
APPROVAL_DECIDED = "approval.decided"  # the requester, of the decision (approved and started, failed, denied, expired)
# Runs of the same command looked through for the previous one with the same params.
PREVIOUS_LOOKBACK = 200
# Query results in an excerpt: the header and this many rows, as tab-separated text.
EXCERPT_ROWS = 50


def notify_end(tx: Connection, job: Job, run: Run, excerpt: str) -> list[str]:
    """Enqueue the deliveries this end calls for (inside ``tx``); their ids."""
    catalogue = current_catalogue()
    command = catalogue.get(run.command)
    from_command = command.notify if command is not None else []
    if not from_command and not catalogue.schedules_notify:
        return []
    schedule_name = job.schedule if job.schedule_known else _schedule_of(tx, run.id)
    schedule = catalogue.schedules.get(schedule_name) if schedule_name else None
    names = list(dict.fromkeys([*from_command, *(schedule.notify if schedule is not None else [])]))
    chosen = _chosen(tx, catalogue, names, run, schedule_name)
    if not chosen:
        return []
    payload = {
        "run": run_view(run, NOTIFIER, include_output=False),
        "excerpt": excerpt or _result_excerpt(run.result),
        "schedule": schedule_name,
        "title": command.title if command is not None else run.command,
        "url": external_url("web.run_page", run_id=run.id),
    }
    return deliveries.enqueue(tx, chosen, EVENT, payload, run_id=run.id)


def notify_approvers(tx: Connection, run: Run, command: Command) -> list[str]:
    """A request waits for approval: tell the approval's ``notify:`` names (inside ``tx``); the delivery ids."""
    names = command.approval.notify if command.approval is not None else []
    return _tell(tx, names, APPROVAL_REQUESTED, run, command, "awaiting approval")


def notify_requester(tx: Connection, run: Run, command: Command | None, outcome: str) -> list[str]:
    """A request was decided (``outcome``: the run's new state): tell the requester through the same names."""
    names = command.approval.notify if command is not None and command.approval is not None else []
    return _tell(tx, names, APPROVAL_DECIDED, run, command, outcome)


def _tell(tx: Connection, names: list[str], event: str, run: Run, command: Command | None, outcome: str) -> list[str]:
    if not names:
        return []
    payload = {
        # The request's approval state is in ``outcome``: its rows are not committed yet, so not read here.
        "run": run_view(run, NOTIFIER, include_output=False, approval=None),
        "excerpt": "",
        "schedule": None,
        "title": command.title if command is not None else run.command,
        "url": external_url("web.run_page", run_id=run.id),
        "outcome": outcome,
    }
    return deliveries.enqueue(tx, names, event, payload, run_id=run.id)


def _chosen(tx: Connection, catalogue: Catalogue, names: list[str], run: Run, schedule: str | None) -> list[str]:
    """The notifications whose ``on:`` this end matches (the previous run is read only if a ``changed`` asks)."""
    chosen = []
    changed: bool | None = None
    for name in names:
        notification = catalogue.notifications[name]
        if notification.wants(run.status):
            chosen.append(name)
        elif notification.on_change:
            if changed is None:
                changed = _changed(tx, run, schedule)
            if changed:
                chosen.append(name)
    return chosen


def _schedule_of(tx: Connection, run_id: str) -> str | None:
    """The schedule whose occurrence started ``run_id`` (for ends recorded by a process that did not start it)."""
    return tx.execute(select(_OCCURRENCES.c.schedule).where(_OCCURRENCES.c.run_id == run_id).limit(1)).scalar()


def _changed(tx: Connection, run: Run, schedule: str | None) -> bool:
    previous = _previous(tx, run, schedule)
    if previous is None:
        return False  # a first run is not a change
    return (previous["status"], previous["output_sha256"]) != (run.status, run.output_sha256)


def _previous(tx: Connection, run: Run, schedule: str | None) -> Mapping[str, Any] | None:
    """The newest other finished run of the same schedule, or of the same command and params."""
    finished = (_RUNS.c.id != run.id, _RUNS.c.status.in_(TERMINAL), _RUNS.c.finished_at.is_not(None))
    if schedule is not None:
        statement = (
            select(_RUNS.c.status, _RUNS.c.output_sha256)
            .join(_OCCURRENCES, _OCCURRENCES.c.run_id == _RUNS.c.id)
            .where(_OCCURRENCES.c.schedule == schedule, *finished)
            .order_by(_RUNS.c.finished_at.desc())
            .limit(1)
        )
        found = tx.execute(statement).first()
        return None if found is None else dict(found._mapping)
    # Params are stored as validated (canonical types, defaults filled, secrets masked): equal params
    # compare equal as JSON values. PostgreSQL's json type has no equality, so they are compared here.
    statement = (
        select(_RUNS.c.status, _RUNS.c.output_sha256, _RUNS.c.params)
        .where(_RUNS.c.command == run.command, *finished)
        .order_by(_RUNS.c.finished_at.desc())
        .limit(PREVIOUS_LOOKBACK)
    )
    for row in tx.execute(statement):
        if row.params == run.params:
            return dict(row._mapping)
    return None


def _result_excerpt(result: Mapping[str, Any] | None) -> str:
    """A query's result as the excerpt: the header and the first rows, tab-separated, cut like output's."""
    if not result:
        return ""
    lines = ["\t".join(str(column) for column in result.get("columns", []))]
    lines += [
        "\t".join("" if value is None else str(value) for value in row) for row in result.get("rows", [])[:EXCERPT_ROWS]
    ]
    return "\n".join(lines)[: int(current_app.config["AUDIT_OUTPUT_EXCERPT_BYTES"])]
