"""The runs engine's vocabulary: who asks (``Caller``), what a start gives back (``Started``), a refusal
(``RunRejected``), the job a worker runs (``Job``), and the run states.

Plain data: imports nothing of the engine, so every module of it (and the executor) can use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from gateway.catalogue import Command
from gateway.catalogue.params import Source
from gateway.db.models import Run
from gateway.platform.phrases import N_

LIVE = ("queued", "running")
# A run that needs approval waits in PENDING_APPROVAL (no process, no lease) until it starts or ends
# denied, expired or withdrawn (DESIGN.md, Approvals).
PENDING_APPROVAL = "pending_approval"
APPROVAL_ENDS = ("denied", "expired", "withdrawn")
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled", "lost", *APPROVAL_ENDS)
STATUSES = (PENDING_APPROVAL, *LIVE, *TERMINAL)


@dataclass(frozen=True)
class Caller:
    """Who asks and from where; ``user`` is a User row (or anything with id, username, is_admin...)."""

    user: Any
    source_ip: str | None  # None: not over the network (the CLI operator); see gateway.access.policy
    user_agent: str | None = None

    def actor(self) -> dict[str, Any]:
        return {"id": self.user.id, "name": self.user.username}


class RunRejected(Exception):
    """Refused before anything was spawned; the refusal is already audited."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.retry_after = retry_after


class ListUnavailable(Exception):
    """A parameter's options could not be read from data: the command cannot run now (never "accept anything").

    ``reason`` is safe to show (it names the parameter, the source and what went wrong).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ListsFromData(Protocol):
    """Checks values against lists read from data (``gateway.choices`` installs it as ``app.extensions[LISTS]``).

    The runs engine knows it only through this protocol: the lists are read by running
    their source commands through ``start``, which lives here.
    """

    def check(
        self, command: Command, values: Mapping[str, Any], source: Source
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """(values with each chosen option as the list has it, errors by field); :raise ListUnavailable:."""
        ...


LISTS = "gateway.choices"


class AlreadyClaimed(Exception):
    """Nothing was written for a scheduled occurrence: another replica (or an earlier pass) recorded it
    already, or this replica is draining and leaves it to the others."""


@dataclass(frozen=True)
class Occurrence:
    """A schedule's occurrence being started: ``claim`` inserts its claim inside the start's transaction.

    ``claim(tx, run_id, outcome)`` returns False when it was claimed already (the insert did
    nothing); admission then writes nothing.  The schedules room supplies it, so the runs
    engine knows nothing of its tables.
    """

    schedule: str
    scheduled_for: datetime
    claim: Callable[[Connection, str | None, str], bool]
    requested_by: str | None = None  # an operator's "run now", not the calendar

    def detail(self) -> dict[str, str]:
        shown = {"schedule": self.schedule, "scheduled_for": self.scheduled_for.isoformat()}
        return {**shown, "requested_by": self.requested_by} if self.requested_by else shown


@dataclass
class Job:
    """Everything a worker needs to execute one run; lives only in this process's memory."""

    run_id: str
    command: Command
    username: str
    queued: bool
    plan: Any = None  # what the command kind's runner planned (gateway.runners); None: nothing to execute
    tempdir: str | None = None
    callback_context: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)
    # When it began running, as recorded in its row (so finishing needs not read it back);
    # None for jobs that did not start here (the reaper's, a cancel's).
    started_at: datetime | None = None
    # What a cancelled run's error says: who or what stopped it.
    cancel_reason: str = N_("cancelled")
    # The schedule whose occurrence this run is (None: not scheduled), known for jobs started here;
    # a job built to end a run started elsewhere (the reaper's) says it is not, and it is looked up.
    schedule: str | None = None
    schedule_known: bool = True


@dataclass
class Started:
    run: Run
    cached: bool = False
    joined: bool = False
    job: Job | None = field(default=None, repr=False)
    # The run's wake-up version before it could move (taken before the job was submitted),
    # so a waiter can wait first and read after; None when not known (cache hits).
    version: int | None = None
