"""The executor: this process's run slots, and the supervisor that keeps its runs' leases alive.

``RUN_WORKERS`` long-lived threads run jobs (long-lived matters: a child's
parent-death signal fires when the thread that spawned it ends).  A run is
``queued`` only while no slot is free.  The supervisor thread, every
``RUN_HEARTBEAT_SECONDS``: renews the leases of this process's runs (timed by
the database clock), passes on cancel requests made through other replicas,
reaps runs whose lease expired anywhere (their worker died), and expires
requests for approval whose time ran out.  When it
starts it also kills process groups that dead workers on this host left behind.

What a job, a lease or a reap means is the runs engine's: the executor calls it
back through the ``RunHooks`` it is created with (``gateway.runs.workers``
wires them) and imports nothing of the engine but its vocabulary (``model``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import Flask

from gateway.db import dialect
from gateway.platform.extensions import db
from gateway.platform.phrases import N_
from gateway.runners.base import Outcome
from gateway.runs.model import Job
from gateway.runs.output import ProcessGroups
from gateway.runs.uploads import remove_folder

log = logging.getLogger("gateway.executor")


@dataclass(frozen=True)
class RunHooks:
    """What the executor asks of the runs engine; each is called inside an app context."""

    execute: Callable[[Job, Executor], None]  # run the job to its end, terminal write included
    finish: Callable[[Job, Outcome], object]  # record an end the job did not reach by itself
    cancel: Callable[[Job], None]  # cancel a job of this process (queued: end it at once)
    renew_leases: Callable[[str, float], list[str]]  # (boot id, heartbeat) -> ids asked to cancel
    reap_expired: Callable[[], object]  # mark runs whose lease expired anywhere as lost
    expire_requests: Callable[[], object]  # end requests for approval whose time ran out (expired)
    kill_orphans: Callable[[str, str], object]  # (host, boot id): groups dead workers left behind


class ExecutorClosed(Exception):
    """This process is shutting down and takes no new runs."""


class Executor:
    def __init__(self, app: Flask, hooks: RunHooks):
        self.app = app
        self.hooks = hooks
        self.workers = int(app.config["RUN_WORKERS"])
        self.heartbeat = float(app.config["RUN_HEARTBEAT_SECONDS"])
        self.boot_id = str(uuid.uuid4())
        self.host = socket.gethostname()
        # Process groups of this process's runs not yet written; batched where there is one writer.
        self.groups = ProcessGroups(batched=dialect.batches_writes(app.config["SQLALCHEMY_DATABASE_URI"]))
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gateway-run")
        self._jobs: dict[str, Job] = {}
        # Runs that ended while their terminal state could not be written: run id -> the retry.
        self._unrecorded: dict[str, Callable[[], object]] = {}
        self._lock = threading.Lock()
        self._inflight = 0
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.last_beat = time.monotonic()
        self.accepting = True

    # --- slots --------------------------------------------------------------------------

    def reserve(self) -> bool:
        """Take a place for a new run; True when a slot is free now (else it will be ``queued``).

        Raises ``ExecutorClosed`` once shutdown began: checked under the same lock
        that shutdown flips, so no start slips past a drain.
        """
        with self._lock:
            if not self.accepting:
                raise ExecutorClosed
            self._inflight += 1
            return self._inflight <= self.workers

    def release(self) -> None:
        with self._lock:
            self._inflight -= 1

    def submit(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.run_id] = job
        try:
            self._pool.submit(self._run, job)
        except RuntimeError:  # the pool shut down between this run's start and here: record, never strand it
            with self._lock:
                self._jobs.pop(job.run_id, None)
                self._inflight -= 1
            self.hooks.finish(job, Outcome(status="cancelled", error=N_("the gateway shut down before the run began")))

    def local_job(self, run_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(run_id)

    def cancel_local(self, run_id: str) -> bool:
        job = self.local_job(run_id)
        if job is None:
            return False
        self.hooks.cancel(job)
        return True

    def active_count(self) -> int:
        with self._lock:
            return self._inflight

    def _run(self, job: Job) -> None:
        with self.app.app_context():
            try:
                self.hooks.execute(job, self)
            except Exception:
                log.exception("run %s failed inside the executor", job.run_id)
                try:
                    self.hooks.finish(job, Outcome(status="failed", error=N_("internal error in the gateway")))
                except Exception:
                    log.exception("could not record the failure of run %s", job.run_id)
            finally:
                with self._lock:
                    self._jobs.pop(job.run_id, None)
                    self._inflight -= 1
                remove_folder(job.tempdir)
                db.session.remove()

    # --- supervisor ---------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._supervisor is not None:
                return
            self._supervisor = threading.Thread(target=self._supervise, name="gateway-supervisor", daemon=True)
        with self.app.app_context():
            try:
                self.hooks.kill_orphans(self.host, self.boot_id)
            except Exception:
                log.exception("could not clean up after dead workers")
            finally:
                db.session.remove()
        self._supervisor.start()

    def supervisor_alive(self) -> bool:
        """Liveness: the supervisor thread runs and has beaten recently."""
        if self._supervisor is None:
            return True  # not started yet (no run submitted): nothing to supervise
        return self._supervisor.is_alive() and time.monotonic() - self.last_beat < 3 * self.heartbeat + 5

    def beat_once(self) -> None:
        with self.app.app_context():
            try:
                cancelled = self.hooks.renew_leases(self.boot_id, self.heartbeat)
                for run_id in cancelled:
                    self.cancel_local(run_id)
                self.record_unrecorded()
                self.hooks.reap_expired()
                self.hooks.expire_requests()
            finally:
                db.session.remove()
        self.last_beat = time.monotonic()

    def defer_finish(self, run_id: str, record: Callable[[], object]) -> None:
        """Keep the end of a run the database could not take; ``record`` is retried at each beat.

        Its lease is renewed meanwhile (the run is still ``running`` in the
        database), so the true outcome, not ``lost``, lands when the database returns.
        """
        with self._lock:
            self._unrecorded[run_id] = record

    def record_unrecorded(self) -> None:
        """Inside an app context: write the ends that could not be written before (oldest first)."""
        with self._lock:
            pending = list(self._unrecorded.items())
        for run_id, record in pending:
            try:
                record()
            except Exception:
                log.warning("still cannot record the end of run %s", run_id, exc_info=True)
                db.session.remove()
                return  # the database is still away: the rest waits for the next beat
            with self._lock:
                self._unrecorded.pop(run_id, None)

    def _supervise(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.beat_once()
            except Exception:
                log.exception("supervisor beat failed")

    def shutdown(self, grace: float = 0.0) -> None:
        """Stop accepting runs; wait up to ``grace`` for running ones, then cancel the rest."""
        with self._lock:
            self.accepting = False
        deadline = time.monotonic() + grace
        while self.active_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_reason = N_(
                "cancelled: the gateway shut down (the grace period of %(seconds)s s ended)", seconds=grace
            )
            job.cancel.set()
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=False)
        with self.app.app_context():  # a last try; what still fails is reaped as lost elsewhere
            try:
                self.record_unrecorded()
            finally:
                db.session.remove()

    # --- readiness (read-only; added for gateway/health.py's "executor:*" checks) ---------------

    def wedged(self, cycles: float = 3) -> frozenset[str]:
        """What keeps this executor from taking runs now (empty when nothing does).

        ``"supervisor"``: its thread died, or no beat (lease renewal, cancels,
        reaping) completed within ``cycles`` heartbeats; ``"workers"``: the run
        pool was shut down or broke.  Reads state only.
        """
        problems = set()
        if self._supervisor is not None and (
            not self._supervisor.is_alive() or time.monotonic() - self.last_beat > cycles * self.heartbeat
        ):
            problems.add("supervisor")
        if self._pool._shutdown or self._pool._broken:
            problems.add("workers")
        return frozenset(problems)
