"""The forwarder: in every serving process a thread per destination; the lease decides which one sends.

Each pass (``step``): hold the destination's lease (taken when free or expired,
renewed after a third of it), read the next batch after the cursor, send it with
no transaction or pooled connection held, and move the cursor only once the
receiver acknowledged the batch.  A failed send is retried, with exponential
backoff and jitter up to a minute, for ever: the lag is the alarm.  A send times
out after a third of the lease and the lease is renewed before each send, so a
forwarder finishes its batch while no other replica may start one: order holds.

Between passes the thread waits ``AUDIT_FORWARD_POLL_SECONDS`` for events written
by other replicas, woken early (after a short pause that gathers a batch) by
appends committed in this process; a replica without the lease tries again every
third of the lease.  Lifecycle as the scheduler's: ``prepare_serving`` starts it,
the drain and the server's end stop it, and a clean stop releases the lease so
another replica takes over at once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from enum import Enum
from typing import Any

from flask import Flask, current_app

from config import ForwardDestination
from gateway.audit.forwarding import batches, cursors
from gateway.audit.forwarding.cursors import Position
from gateway.audit.forwarding.senders import sender_for
from gateway.db.units import on_commit
from gateway.platform import signals
from gateway.platform.extensions import db

log = logging.getLogger("gateway.audit.forward")

EXTENSION = "gateway.audit_forwarding"
MAX_BATCH_BYTES = 4 * 1024 * 1024
BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS = 1.0, 60.0
GATHER_SECONDS = 0.2  # after a local append wakes us: let the next few join the batch
_jitter = random.SystemRandom()


class Step(Enum):
    STANDBY = "standby"  # another process holds the lease
    IDLE = "idle"  # nothing new after the cursor
    SENT = "sent"  # a batch was acknowledged (or the cursor moved under us): look again at once
    FAILED = "failed"


class DestinationForwarder:
    """Forwards one destination from this process while it holds the lease."""

    def __init__(self, app: Flask, destination: ForwardDestination, holder: str, stop: threading.Event):
        self.app, self.destination, self.name, self.holder = app, destination, destination.name, holder
        self.batch = int(app.config["AUDIT_FORWARD_BATCH"])
        self.poll = float(app.config["AUDIT_FORWARD_POLL_SECONDS"])
        self.lease = float(app.config["AUDIT_FORWARD_LEASE_SECONDS"])
        self.sender = sender_for(
            destination,
            timeout=float(app.config["AUDIT_FORWARD_TIMEOUT_SECONDS"]),
            ca_file=app.config.get("OUTBOUND_CA_FILE"),
            public_base_url=app.config["PUBLIC_BASE_URL"],
        )
        self.position: Position | None = None  # known only while we hold the lease
        self.failures = 0
        self.sent = 0  # events acknowledged through this process (tests and benchmarks read it)
        self._renewed = 0.0  # monotonic time just before the lease was last taken or renewed
        self._created = False
        self._reported_gap: int | None = None
        self._stop = stop
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"gateway-audit-forward-{self.name}", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    with self.app.app_context():
                        step = self.step()
                        db.session.remove()
                except Exception:
                    log.exception("audit forwarding to %s: pass failed", self.name)
                    self.position = None
                    step = Step.FAILED
                    self.failures += 1
                self._pause(step)
        finally:
            self._release()

    def _pause(self, step: Step) -> None:
        if step is Step.SENT:
            return
        if step is Step.FAILED:
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(self.failures - 1, 16))
            self._stop.wait(delay * _jitter.uniform(0.5, 1.0))
            return
        if step is Step.STANDBY:  # local appends do not concern us: the holder sends them
            self._stop.wait(max(1.0, self.lease / 3))
            return
        if self._wake.wait(self.poll):
            self._wake.clear()
            self._stop.wait(GATHER_SECONDS)

    def _release(self) -> None:
        self.sender.close()
        if not self._created:
            return
        try:
            with self.app.app_context():
                cursors.release(self.name, self.holder)
                db.session.remove()
        except Exception:
            log.warning("audit forwarding to %s: could not release the lease (it expires by itself)", self.name)

    # --- one pass -----------------------------------------------------------------------------

    def step(self) -> Step:
        """Send the next batch if this process holds the lease (inside an app context)."""
        if not self._created:
            cursors.ensure(self.name)  # a new destination starts at the head
            self._created = True
        position = self._hold()
        if position is None:
            return Step.STANDBY
        events = batches.read(position.seq, self.batch, MAX_BATCH_BYTES)
        if not events:
            return Step.IDLE
        self._check_link(position, events[0])
        if self._hold() != position:  # renewed if the read took a while, so the send ends before the lease can
            return Step.SENT
        result = self.sender.send(events)
        if not result.ok:
            self.failures += 1
            reason = result.reason or "protocol"
            cursors.failed(self.name, self.holder, reason)
            log.warning("audit forwarding to %s failed (%s), attempt %d; retrying", self.name, reason, self.failures)
            return Step.FAILED
        last = events[-1]
        moved_at = time.monotonic()
        if not cursors.advance(self.name, self.holder, position, Position(last.seq, last.hash), self.lease):
            log.warning("audit forwarding to %s: the cursor was reset or the lease lost; reading it again", self.name)
            self.position = None
            return Step.SENT
        self.position, self._renewed = Position(last.seq, last.hash), moved_at
        self.sent += len(events)
        if self.failures:
            log.info("audit forwarding to %s delivers again after %d failed attempt(s)", self.name, self.failures)
            self.failures = 0
        return Step.SENT

    def _hold(self) -> Position | None:
        """The cursor if we hold the lease with at least two thirds of it left (renewed if need be), else None."""
        started = time.monotonic()
        if self.position is not None and started - self._renewed < self.lease / 3:
            return self.position
        self.position = cursors.take_lease(self.name, self.holder, self.lease)
        self._renewed = started
        return self.position

    def _check_link(self, position: Position, first: batches.ForwardedEvent) -> None:
        """Say so in the log when the ledger does not continue where the cursor stands (rows pruned, or rewritten)."""
        if first.seq == self._reported_gap:
            return
        if first.seq != position.seq + 1:
            log.warning(
                "audit forwarding to %s: rows %d-%d are gone (pruned?); continuing at %d",
                self.name, position.seq + 1, first.seq - 1, first.seq,
            )  # fmt: skip
            self._reported_gap = first.seq
        elif position.hash is not None and first.prev_hash != position.hash:
            log.error(
                "audit forwarding to %s: row %d does not link to row %d as forwarded (run audit verify)",
                self.name, first.seq, position.seq,
            )  # fmt: skip
            self._reported_gap = first.seq


class Forwarding:
    """This process's forwarders, one per configured destination, sharing a stop signal and a lease holder id."""

    def __init__(self, app: Flask):
        self.holder = f"{socket.gethostname()[:60]}:{os.getpid()}:{random.SystemRandom().getrandbits(32):08x}"
        self._stop = threading.Event()
        self.destinations = {
            destination.name: DestinationForwarder(app, destination, self.holder, self._stop)
            for destination in app.config["AUDIT_FORWARD"]
        }

    def start(self) -> None:
        for forwarder in self.destinations.values():
            forwarder.start()

    def wake(self) -> None:
        for forwarder in self.destinations.values():
            forwarder.wake()

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every thread and release the leases held (waits up to ``timeout`` s for a batch in flight)."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for forwarder in self.destinations.values():
            forwarder.join(max(0.0, deadline - time.monotonic()))


def _appended(sender: Any, row: Any = None, unit: Any = None, **_: Any) -> None:
    """Wake this app's forwarders once an append commits (never before: they would read nothing new)."""
    forwarding: Forwarding | None = current_app.extensions.get(EXTENSION)
    if forwarding is not None and forwarding.running and unit is not None:
        on_commit(unit, forwarding.wake)


_start_lock = threading.Lock()
_listening = False


def start_forwarding(app: Flask) -> Forwarding | None:
    """Start this process's forwarders once; None when ``AUDIT_FORWARD`` names no destination."""
    global _listening
    if not app.config.get("AUDIT_FORWARD"):
        return None
    with _start_lock:
        forwarding: Forwarding | None = app.extensions.get(EXTENSION)
        if forwarding is None or not forwarding.running:
            forwarding = app.extensions[EXTENSION] = Forwarding(app)
            forwarding.start()
        if not _listening:
            signals.audit_appended.connect(_appended, weak=False)
            _listening = True
    return forwarding


def stop_forwarding(app: Flask, timeout: float = 10.0) -> None:
    forwarding: Forwarding | None = app.extensions.get(EXTENSION)
    if forwarding is not None:
        forwarding.stop(timeout)
