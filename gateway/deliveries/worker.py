"""The delivery worker: one thread per process, waking when a delivery is due or enqueued, never polling fast.

A pass claims one due delivery at a time (a short write unit with a lease),
sends it with nothing of the database held, and records the outcome in a
second unit; it goes on until nothing is due, then sleeps until the next
delivery is due (a retry's time, or another replica's lease running out), at
most ``MAX_SLEEP_SECONDS``.  A new delivery wakes it at once: in this
process through ``wake()`` after the cause commits, in the others through
the PostgreSQL NOTIFY the enqueue sends (``gateway.platform.notify``).
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from gateway.catalogue.switches import current_catalogue
from gateway.deliveries import sending, store
from gateway.deliveries.retries import RetryPolicy
from gateway.outbound import SendResult
from gateway.platform import notify, signals
from gateway.platform.extensions import db

log = logging.getLogger("gateway.deliveries")
MAX_SLEEP_SECONDS = 60.0
ERROR_PAUSE_SECONDS = 5.0
WORKER_KEY = "gateway.deliveries.worker"


class DeliveryWorker:
    """This process's worker; ``run_pass`` is one pass, which tests call directly."""

    def __init__(self, app: Flask):
        self.app = app
        self.policy = RetryPolicy.from_config(app.config)
        self.lease = float(app.config["DELIVERY_LEASE_SECONDS"])
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="gateway-deliveries", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the send in flight (if any) is recorded; what is left waits in the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)

    def wake(self) -> None:
        """Look now (a delivery was enqueued or retried)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: a wake-up during it makes the wait below return at once
            try:
                with self.app.app_context():
                    wait = self.run_pass()
            except Exception:
                log.exception("delivery pass failed; trying again shortly")
                wait = ERROR_PAUSE_SECONDS
            self._wake.wait(min(max(wait, 0.01), MAX_SLEEP_SECONDS))

    # --- one pass -----------------------------------------------------------------------------

    def run_pass(self) -> float:
        """Send every delivery due now (inside an app context); seconds until the next one is due.

        Each round reads first (no write lock) and claims only when something is due.
        """
        try:
            while not self._stop.is_set():
                due = store.seconds_until_due()
                if due is None or due > 0:
                    return MAX_SLEEP_SECONDS if due is None else due
                claimed = store.claim(self.lease)
                db.session.remove()  # nothing of the database is held while the receiver is talked to
                if claimed is not None:  # None: another replica took it between the read and the claim
                    self.deliver(claimed)
        finally:
            db.session.remove()
        return 0.0

    def deliver(self, claimed: store.Claimed) -> str | None:
        """Send one claimed delivery and record the outcome; the status it got (None: the lease was lost)."""
        catalogue = current_catalogue()
        try:
            result = sending.attempt(claimed, catalogue, self.app.config)
        except Exception:  # a bug here must not keep a delivery leased forever: it fails, and dies in the end
            log.exception("delivery %s to %s could not be attempted", claimed.id, claimed.destination)
            result = SendResult(ok=False, reason=sending.INTERNAL)
        reason = None if result.ok else (result.reason or "protocol")
        dead = not result.ok and self.policy.gives_up(claimed.attempts)
        status = store.record(
            claimed, result.ok, reason, result.status, dead=dead, retry_in=self.policy.delay(claimed.attempts)
        )
        # A destination no longer in the catalogue is not a label value (labels come from reviewed names only).
        destination = claimed.destination if claimed.destination in catalogue.notifications else None
        signals.send(
            signals.delivery_attempted, self.app, destination=destination, result="delivered" if result.ok else reason
        )
        if result.ok:
            log.info("delivery %s (%s) delivered to %s", claimed.id, claimed.event, claimed.destination)
        else:
            log.warning(
                "delivery %s to %s failed (%s), attempt %d%s", claimed.id, claimed.destination, reason,
                claimed.attempts, ": dead" if dead else "",
            )  # fmt: skip
        return status


def get_worker(app: Flask) -> DeliveryWorker:
    """The app's worker (created, not started)."""
    worker: DeliveryWorker | None = app.extensions.get(WORKER_KEY)
    if worker is None:
        worker = app.extensions[WORKER_KEY] = DeliveryWorker(app)
    return worker


def start_worker(app: Flask) -> DeliveryWorker:
    """Start this process's worker, woken by other replicas' enqueues through the NOTIFY listener."""
    worker = get_worker(app)
    notify.subscribe(app, notify.DELIVERY, worker.wake)
    worker.start()
    return worker


def stop_worker(app: Flask) -> None:
    worker: DeliveryWorker | None = app.extensions.get(WORKER_KEY)
    if worker is not None:
        worker.stop()


def wake_local(app: Flask) -> None:
    """Wake this process's worker, if it runs (after a commit that enqueued or retried something)."""
    worker: DeliveryWorker | None = app.extensions.get(WORKER_KEY)
    if worker is not None:
        worker.wake()
