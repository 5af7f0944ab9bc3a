"""Cross-replica wake-ups over PostgreSQL LISTEN/NOTIFY.

Writers call ``publish(run_id, kind)`` inside the write transaction that
changes a run (an output flush, the finish, a cancel request): PostgreSQL
delivers the notification at commit, so a waiter woken by it always finds the
change committed.  Every serving process runs one ``Listener`` thread on its
own autocommit connection; a notification becomes an in-process
``wakeups.notify`` (long-polls and streams re-read the database) and, for a
cancel request, reaches the local job at once instead of at the next
heartbeat.  A ``delivery`` notification (an outbox row was enqueued or
retried) concerns no run: it calls the callbacks ``subscribe``d to it (each
process's delivery worker).  On SQLite there is one process and nothing to do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import text

from gateway.db import dialect
from gateway.db.units import WriteUnit, core
from gateway.platform.extensions import db
from gateway.platform.wakeup import wakeups

log = logging.getLogger("gateway.notify")

CHANNEL = "gateway_runs"
DELIVERY = "delivery"  # a delivery was enqueued or retried: the key is its id, not a run's
# started: a run that waited for approval began
KINDS = ("output", "finished", "cancel", "started", DELIVERY)
_SUBSCRIBERS = "gateway.notify.subscribers"
RECONNECT_SECONDS = 1.0
POLL_SECONDS = 1.0


def subscribe(app: Flask, kind: str, callback: Callable[[], None]) -> None:
    """Call ``callback`` (in the listener's thread; keep it quick) whenever a ``kind`` notification arrives,
    and after a reconnect (what was published meanwhile is lost).  Kinds that concern no run use this."""
    subscribers: dict[str, list[Callable[[], None]]] = app.extensions.setdefault(_SUBSCRIBERS, {})
    callbacks = subscribers.setdefault(kind, [])
    if callback not in callbacks:
        callbacks.append(callback)


def publish(run_id: str, kind: str, session: WriteUnit | None = None) -> None:
    """Queue a notification in the current write transaction (sent by PostgreSQL at its commit).

    Must be called inside a write unit (``write_transaction()`` or
    ``write_connection()``): outside one it would open a
    transaction nobody commits.  A no-op on SQLite.
    """
    connection = core(session or db.session())
    if not dialect.has_notify(connection):
        return
    connection.execute(_NOTIFY, {"channel": CHANNEL, "payload": f"{kind}:{run_id}"})


_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def parse(payload: str) -> tuple[str, str] | None:
    """``kind:run_id`` -> (kind, run_id); None for anything else (another writer on the channel)."""
    kind, _, run_id = payload.partition(":")
    if kind not in KINDS or not run_id or len(run_id) > 64:
        return None
    return kind, run_id


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as psycopg understands it (no ``+driver`` part)."""
    return sa.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener(threading.Thread):
    """One per process: LISTEN on a dedicated autocommit connection, reconnecting after errors."""

    def __init__(self, app: Flask):
        super().__init__(name="gateway-notify", daemon=True)
        self.app = app
        self.url = libpq_url(app.config["SQLALCHEMY_DATABASE_URI"])
        self.connected = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception:
                log.warning("notification listener lost its connection; reconnecting", exc_info=True)
            self.connected.clear()
            self._stop.wait(RECONNECT_SECONDS)

    def _listen(self) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            # Whatever was published while we were not listening is lost: wake every waiter to re-read.
            wakeups.notify_all()
            for callbacks in self.app.extensions.get(_SUBSCRIBERS, {}).values():
                self._call(callbacks)
            while not self._stop.is_set():
                for notification in connection.notifies(timeout=POLL_SECONDS):
                    self.handle(notification.payload)
                    if self._stop.is_set():
                        break

    def handle(self, payload: str) -> None:
        parsed = parse(payload)
        if parsed is None:
            return
        kind, run_id = parsed
        if kind == DELIVERY:
            self._call(self.app.extensions.get(_SUBSCRIBERS, {}).get(kind, []))
            return
        wakeups.notify(run_id)
        if kind == "cancel":
            self._cancel(run_id)

    @staticmethod
    def _call(callbacks: list[Callable[[], None]]) -> None:
        for callback in list(callbacks):
            try:
                callback()
            except Exception:
                log.exception("a notification subscriber raised")

    def _cancel(self, run_id: str) -> None:
        """A cancel requested through any replica: end the job if it runs here."""
        executor: Any = self.app.extensions.get("gateway.executor")
        if executor is None or executor.local_job(run_id) is None:
            return
        with self.app.app_context():
            try:
                executor.cancel_local(run_id)
            except Exception:
                log.exception("could not cancel run %s on request from another replica", run_id)
            finally:
                db.session.remove()


def start_listener(app: Flask) -> Listener | None:
    """Start this process's listener once (PostgreSQL only); returns it, or None on SQLite."""
    if not dialect.has_notify(app.config["SQLALCHEMY_DATABASE_URI"]):
        return None
    with _start_lock:
        listener = app.extensions.get("gateway.notify")
        if listener is None or not listener.is_alive():
            listener = app.extensions["gateway.notify"] = Listener(app)
            listener.start()
            from gateway.platform.health import add_readiness_check

            add_readiness_check(app, "notify:listener", check_listener)
    return listener


def stop_listener(app: Flask) -> None:
    listener = app.extensions.get("gateway.notify")
    if listener is not None:
        listener.stop()


def check_listener() -> str:
    """Readiness detail: ``warn`` while disconnected (waiters fall back to periodic re-reads)."""
    from flask import current_app

    listener = current_app.extensions.get("gateway.notify")
    return "pass" if listener is None or listener.connected.is_set() else "warn"


_start_lock = threading.Lock()
