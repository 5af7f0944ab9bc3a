"""Waiting for a run to finish without holding a database connection, woken by ``gateway.platform.wakeup``.

Every wait drops the caller's database session first (``db.session.remove()``),
and after waking the state is read again from the database: any replica may have
written it.  The wait slice is bounded (``RECHECK_SECONDS``) only as a safety net
for a run executing in another replica; an in-process finish wakes the waiter at once.
"""

from __future__ import annotations

import time

from gateway.db.models import Run
from gateway.platform.extensions import db
from gateway.platform.wakeup import wakeups
from gateway.runs.model import TERMINAL
from gateway.runs.store import current_run

RECHECK_SECONDS = 5.0


def fresh_run(run_id: str) -> Run | None:
    """The run as the database has it now (``current_run``), in no session: the caller's is dropped first."""
    db.session.remove()
    return current_run(run_id)


def wait_for_finish(run_id: str, seconds: float, seen_version: int | None = None) -> Run | None:
    """Return as soon as the run is terminal, or when ``seconds`` have passed; no connection held meanwhile.

    ``seen_version`` (from ``Started.version``, taken before the run could move)
    lets a caller that just started the run wait before its first read.
    """
    deadline = time.monotonic() + seconds
    if seen_version is not None:
        db.session.remove()
        wakeups.wait(run_id, seen_version, min(seconds, RECHECK_SECONDS))
    while True:
        version = wakeups.version(run_id)  # before reading: a finish in between moves it
        run = fresh_run(run_id)
        remaining = deadline - time.monotonic()
        if run is None or run.status in TERMINAL or remaining <= 0:
            return run
        db.session.remove()
        wakeups.wait(run_id, version, min(remaining, RECHECK_SECONDS))
