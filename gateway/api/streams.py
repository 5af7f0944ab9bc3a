"""Long-lived requests: a per-process cap, long-polls and SSE streams woken by ``gateway.wakeup``.

Every wait drops the request's database session first (``db.session.remove()``),
so a thousand open run pages hold no connection; after waking, state is read
again from the database (any replica may have written it).  The wait slice is
bounded (``RECHECK_SECONDS``) only as a safety net for a run executing in
another replica until the cross-replica wake-up is in place: it is not a poll
loop, an in-process finish wakes the waiter at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, select

from gateway import runs
from gateway.api.errors import ApiError
from gateway.appctx import app_object
from gateway.extensions import db
from gateway.models import Run
from gateway.prepared import Prepared
from gateway.wakeup import wakeups

RECHECK_SECONDS = 5.0
DEFAULT_KEEPALIVE_SECONDS = 15.0
RETRY_AFTER_SECONDS = 5
PAGE = 500


class Slot:
    """One place among STREAMS_PER_PROCESS; release is idempotent (close hooks may call it twice)."""

    def __init__(self, semaphore: threading.BoundedSemaphore):
        self._semaphore = semaphore
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._semaphore.release()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StreamSlots:
    def __init__(self, limit: int):
        self.limit = limit
        self._semaphore = threading.BoundedSemaphore(limit)

    def try_acquire(self) -> Slot | None:
        if not self._semaphore.acquire(blocking=False):
            return None
        return Slot(self._semaphore)


def slots(app: Flask | None = None) -> StreamSlots:
    app = app or app_object()
    found: StreamSlots = app.extensions["gateway.api.streams"]
    return found


def take_slot() -> Slot:
    """A slot for a long-lived request, or 503 with Retry-After: probes and pages keep their threads."""
    slot = slots().try_acquire()
    if slot is None:
        raise ApiError(
            503, "unavailable", "Too many open streams and long-polls on this server; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )  # fmt: skip
    return slot


_RUN_BY_ID = Prepared(select(Run.__table__).where(Run.__table__.c.id == bindparam("run_id")))


def fresh_run(run_id: str) -> Run | None:
    """The run as the database has it now: read on a connection of its own (no stale snapshot).

    Read through Core into a detached Run: a long-poll or stream re-reads it at
    every wake-up, and the ORM's identity-map load cost more than the query.
    """
    db.session.remove()
    with db.engine.connect() as connection:
        row = _RUN_BY_ID.first(connection, {"run_id": run_id})
    return None if row is None else runs.detached_run(row)


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
        if run is None or run.status in runs.TERMINAL or remaining <= 0:
            return run
        db.session.remove()
        wakeups.wait(run_id, version, min(remaining, RECHECK_SECONDS))


def _event(name: str, data: Any, event_id: int | None = None) -> str:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return "\n".join(lines) + "\n\n"


def sse_events(
    run_id: str,
    viewer: Any,
    after_seq: int,
    still_allowed: Callable[[], bool],
    keepalive: float | None = None,
) -> Iterator[str]:
    """The SSE body: ``output`` (id = chunk seq), ``status`` on each change, one final ``end``.

    Chunks are read after the run row, and the terminal state is committed
    together with the last chunks, so a terminal status seen here means every
    chunk is readable: nothing is lost before ``end``.
    """
    keepalive = keepalive or float(current_app.config.get("API_KEEPALIVE_SECONDS", DEFAULT_KEEPALIVE_SECONDS))
    yield "retry: 2000\n\n"
    last_status: str | None = None
    while True:
        version = wakeups.version(run_id)
        run = fresh_run(run_id)
        if run is None:
            return
        while True:
            chunks = runs.output_chunks(run_id, after_seq, limit=PAGE)
            for chunk in chunks:
                after_seq = chunk.seq
                yield _event("output", {"stream": chunk.stream, "text": chunk.text}, chunk.seq)
            if len(chunks) < PAGE:
                break
        if run.status != last_status:
            last_status = run.status
            yield _event("status", {"id": run.id, "status": run.status})
        if run.status in runs.TERMINAL:
            yield _event("end", runs.run_view(run, viewer, include_output=False))
            return
        db.session.remove()
        moved = wakeups.wait(run_id, version, keepalive) != version
        if not still_allowed():
            yield _event("error", {"error": {"code": "unauthorized", "message": "Access ended.", "details": {}}})
            return
        if not moved:
            yield ": keep-alive\n\n"


def init_app(app: Flask) -> None:
    app.extensions["gateway.api.streams"] = StreamSlots(int(app.config["STREAMS_PER_PROCESS"]))
