"""Long-lived requests: per-process and per-user caps, long-polls and SSE streams woken by ``gateway.platform.wakeup``.

Every long-lived request (API stream, which the web run page follows, API
long-poll and wait on start, Shell2HTTP ``wait=true``) holds a slot from
``take_slot``: at most ``STREAMS_PER_PROCESS`` in the process and
``STREAMS_PER_USER`` per user across their tokens and sessions, so one user
cannot take every thread that other users' live output waits on.

Every wait drops the request's database session first (``db.session.remove()``),
so a thousand open run pages hold no connection; after waking, state is read
again from the database (any replica may have written it).  The waits
themselves are ``gateway.runs.waiting``'s, shared with the engine's own waiters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, current_app
from flask_login import current_user

from gateway import runs
from gateway.api.errors import ApiError
from gateway.platform.appctx import app_object
from gateway.platform.extensions import db
from gateway.platform.wakeup import wakeups
from gateway.runs.waiting import fresh_run, wait_for_finish

__all__ = ["fresh_run", "sse_events", "take_slot", "wait_for_finish"]

DEFAULT_KEEPALIVE_SECONDS = 15.0
RETRY_AFTER_SECONDS = 5
PAGE = 500


class Slot:
    """One place among STREAMS_PER_PROCESS and its holder's STREAMS_PER_USER; release is idempotent.

    Close hooks and ``with`` blocks may both release it: only the first counts.
    """

    def __init__(self, owner: StreamSlots, holder: object):
        self._owner = owner
        self._holder = holder
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._owner._give_back(self._holder)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SlotsFull(Exception):
    """No slot: ``per_user`` says whether the holder's own cap (rather than the process's) refused it."""

    def __init__(self, per_user: bool):
        super().__init__("per-user stream cap" if per_user else "per-process stream cap")
        self.per_user = per_user


class StreamSlots:
    """The counts of open long-lived requests, in total and per holder (a user id), under one lock."""

    def __init__(self, limit: int, per_user: int):
        self.limit = limit
        self.per_user = per_user
        self._lock = threading.Lock()
        self._open = 0
        self._by_holder: dict[object, int] = {}

    def acquire(self, holder: object) -> Slot:
        """A slot for ``holder``, or SlotsFull; the holder's cap is checked first (it is theirs to free)."""
        with self._lock:
            held = self._by_holder.get(holder, 0)
            if held >= self.per_user:
                raise SlotsFull(per_user=True)
            if self._open >= self.limit:
                raise SlotsFull(per_user=False)
            self._by_holder[holder] = held + 1
            self._open += 1
        return Slot(self, holder)

    def held(self, holder: object) -> int:
        with self._lock:
            return self._by_holder.get(holder, 0)

    @property
    def open(self) -> int:
        with self._lock:
            return self._open

    def _give_back(self, holder: object) -> None:
        with self._lock:
            self._open -= 1
            left = self._by_holder.get(holder, 1) - 1
            if left > 0:
                self._by_holder[holder] = left
            else:
                self._by_holder.pop(holder, None)  # no entry outlives its last slot: the map stays small


def slots(app: Flask | None = None) -> StreamSlots:
    app = app or app_object()
    found: StreamSlots = app.extensions["gateway.api.streams"]
    return found


def take_slot() -> Slot:
    """A slot for the signed-in caller's long-lived request: the one place both caps are counted.

    :raise ApiError 429: the caller holds STREAMS_PER_USER already (their tokens and sessions together);
    :raise ApiError 503: the process holds STREAMS_PER_PROCESS: probes and pages keep their threads.
    """
    holder = getattr(current_user, "id", None)  # the user, whichever token or session they came with
    try:
        return slots().acquire(holder)
    except SlotsFull as full:
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if full.per_user:
            raise ApiError(
                429, "rate_limited",
                "You have too many open streams and long-polls; close one (e.g. a run page) or retry shortly.",
                headers=retry,
            ) from None  # fmt: skip
        raise ApiError(
            503, "unavailable", "Too many open streams and long-polls on this server; retry shortly.", headers=retry
        ) from None


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
    app.extensions["gateway.api.streams"] = StreamSlots(
        int(app.config["STREAMS_PER_PROCESS"]), int(app.config["STREAMS_PER_USER"])
    )
