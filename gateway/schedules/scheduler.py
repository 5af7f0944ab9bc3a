"""The scheduler: one thread per replica, no leader, waking at the next due occurrence.

Each pass (``tick``) reads the schedules' states and newest claims, then for each
schedule that is not paused: occurrences older than ``SCHEDULE_MISFIRE_GRACE_SECONDS``
are recorded once as a gap (``schedule.missed``), the others are started through
``runs.start`` as ``system:scheduler``; whichever replica's claim commits first runs
an occurrence, the others find it claimed.  A draining replica claims nothing.
Between passes the thread waits on an Event until the next occurrence (at most a
minute, so a catalogue reload or another replica's resume is seen).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import islice, takewhile

from flask import Flask

from gateway import runs
from gateway.access.policy import SCHEDULER
from gateway.catalogue import Schedule
from gateway.catalogue.switches import current_catalogue
from gateway.platform import signals
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc, utcnow
from gateway.schedules import store

log = logging.getLogger("gateway.schedules")
MAX_SLEEP_SECONDS = 60.0
# A gap longer than this many occurrences is counted up to here (a */1 schedule down for a week).
MAX_GAP = 10_000


class Scheduler:
    """This replica's scheduler; ``clock`` is injectable so tests can drive ``tick`` through any calendar."""

    def __init__(self, app: Flask, clock: Callable[[], datetime] = utcnow):
        self.app = app
        self.clock = clock
        self.grace = timedelta(seconds=int(app.config["SCHEDULE_MISFIRE_GRACE_SECONDS"]))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._loaded: frozenset[str] | None = None  # the schedules of the previous pass (None: no pass yet)
        self._thread: threading.Thread | None = None

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="gateway-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def wake(self) -> None:
        """Look again now (a pause, a resume, a reload on this replica)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            next_at: datetime | None = None
            try:
                with self.app.app_context():
                    next_at = self.tick()
                    db.session.remove()
            except Exception:
                log.exception("scheduler pass failed; trying again shortly")
                next_at = self.clock() + timedelta(seconds=5)
            wait = MAX_SLEEP_SECONDS if next_at is None else (next_at - self.clock()).total_seconds() + 0.01
            self._wake.wait(min(max(wait, 0.01), MAX_SLEEP_SECONDS))
            self._wake.clear()

    # --- one pass -----------------------------------------------------------------------------

    def draining(self) -> bool:
        executor = self.app.extensions.get("gateway.executor")
        return bool(self.app.extensions.get("gateway.draining")) or (executor is not None and not executor.accepting)

    def tick(self) -> datetime | None:
        """Start what is due at ``clock()`` (inside an app context); the next occurrence of any active schedule."""
        now = self.clock()
        schedules = current_catalogue().schedules
        if not schedules:
            self._loaded = frozenset()
            return None
        if self.draining():
            return None
        store.ensure_states(schedules, now)
        if self._loaded is not None and (returned := set(schedules) - self._loaded):
            # Back in the catalogue after a reload removed them: they start afresh, like new ones
            # (their time out of the catalogue is neither caught up nor recorded as missed).
            store.restart(returned, now)
        self._loaded = frozenset(schedules)
        states, newest = store.states(), store.last_claimed()
        db.session.rollback()
        upcoming: list[datetime] = []
        for name in sorted(schedules):
            schedule, state = schedules[name], states[name]
            if state.paused:
                continue
            cursor = max(state.since, newest.get(name, state.since))
            due = list(islice(takewhile(lambda at: at <= now, schedule.occurrences(cursor)), MAX_GAP))
            if due and now - due[0] > self.grace:
                self._record_missed(schedule, state.since, now)
                due = [at for at in due if now - at <= self.grace]
            for at in due:
                self._fire(schedule, at)
            upcoming.append(schedule.next_after(now))
        return min(upcoming, default=None)

    def _record_missed(self, schedule: Schedule, since: datetime, now: datetime) -> None:
        def gap(cursor: datetime) -> list[datetime]:
            late = takewhile(lambda at: now - at > self.grace, schedule.occurrences(cursor))
            return list(islice(late, MAX_GAP))

        count = store.record_missed(schedule.name, since, gap)
        if count:
            signals.send(signals.schedule_missed, self.app, schedule=schedule.name, count=count)
            log.warning("schedule %s missed %d occurrence(s)", schedule.name, count)

    def _fire(self, schedule: Schedule, at: datetime) -> None:
        if self.draining():
            return
        occurrence = runs.Occurrence(schedule.name, at, store.claimer(schedule.name, at))
        try:
            started = runs.start(
                schedule.command, dict(schedule.params), runs.Caller(SCHEDULER, None), occurrence=occurrence
            )
        except runs.AlreadyClaimed:
            return
        except runs.RunRejected as exc:
            log.warning("schedule %s at %s refused: %s", schedule.name, at.isoformat(), exc.message)
        except Exception:  # the occurrence stays unclaimed: retried next pass, within the grace
            log.exception("schedule %s at %s could not start", schedule.name, at.isoformat())
        else:
            lag = (as_utc(started.run.created_at) - at).total_seconds()
            signals.send(signals.schedule_started, self.app, schedule=schedule.name, lag=lag)
        finally:
            db.session.remove()


def run_now(name: str, requested_by: str) -> runs.Started:
    """An operator's "run now": the schedule's command and params as ``system:scheduler``, outside the calendar.

    Recorded in the schedule's history (an occurrence at this instant, ``manual``) with who
    asked; :raise KeyError: no such schedule; ``runs.RunRejected`` as any start.
    """
    schedule = current_catalogue().schedules[name]
    at = utcnow()
    occurrence = runs.Occurrence(name, at, store.claimer(name, at, manual=True), requested_by=requested_by)
    return runs.start(schedule.command, dict(schedule.params), runs.Caller(SCHEDULER, None), occurrence=occurrence)


def get_scheduler(app: Flask) -> Scheduler:
    """The app's scheduler (created, not started)."""
    scheduler: Scheduler | None = app.extensions.get("gateway.scheduler")
    if scheduler is None:
        scheduler = app.extensions["gateway.scheduler"] = Scheduler(app)
    return scheduler


def start_scheduler(app: Flask) -> Scheduler:
    scheduler = get_scheduler(app)
    scheduler.start()
    return scheduler


def stop_scheduler(app: Flask) -> None:
    scheduler: Scheduler | None = app.extensions.get("gateway.scheduler")
    if scheduler is not None:
        scheduler.stop()
