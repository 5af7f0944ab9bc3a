"""A client-side deadline for the gateway's PostgreSQL round trips.

libpq has a connect timeout but no read timeout: when the link to the server
stalls (a hung server, a middlebox that accepts and never answers, a
partition where the kernel still acknowledges), a statement on a pooled
connection waits for as long as the stall lasts, and so does the request
holding it. TCP keepalives and ``tcp_user_timeout`` do not help while the
other side's kernel still answers, and PostgreSQL's own ``statement_timeout``
is enforced by the server that is not answering.

So a watchdog thread shuts down the socket of a round trip that has not
returned after ``STATEMENT_DEADLINE_SECONDS``. The driver's blocked wait then
sees end-of-file, psycopg raises ``OperationalError`` (a disconnect, so the
pool discards that connection), and the request answers 503 like any other
database outage. Every round trip of the app's engine is watched: statements,
the pool's pre-ping (where a request meets a stalled link first), commits and
rollbacks (including the one at the end of each request). They are wrapped at
the dialect, in ``try``/``finally``, so an entry never outlives its call
whatever the outcome. A request that waits longer than the deadline on the
database (a lock held by a long prune, say) gets 503 too: no request should.

Whether an app's engine is guarded is its configuration, read as the engine
is set up (``DATABASE_STALL_GUARD``, on unless set otherwise): the CLI's apps
are built with it off (``manage.py``: prunes and migrations may run long),
except the one ``serve`` runs. Query commands use their own engines and their
own ``statement_timeout``, not this one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from gateway.db.dialect import can_stall

log = logging.getLogger(__name__)

STATEMENT_DEADLINE_SECONDS = 20.0
_GUARDED = ("do_execute", "do_execute_no_params", "do_executemany", "do_commit", "do_rollback", "do_ping")


class StallGuard:
    """Round trips in flight (key -> deadline, socket, connection) and the thread that ends stalled ones."""

    def __init__(self, deadline: float = STATEMENT_DEADLINE_SECONDS) -> None:
        self.deadline = deadline
        self._watched: dict[int, tuple[float, int, weakref.ref[Any]]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, key: int, fd: int, connection: Any) -> None:
        with self._changed:
            self._watched[key] = (time.monotonic() + self.deadline, fd, weakref.ref(connection))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gateway-stall-guard", daemon=True)
                self._thread.start()
            self._changed.notify()  # the new deadline may be the soonest (tests shorten it)

    def done(self, key: int) -> None:
        with self._changed:
            self._watched.pop(key, None)

    def reset_after_fork(self) -> None:
        """A forked child has none of the parent's round trips in flight, nor its thread."""
        self._watched = {}
        self._changed = threading.Condition()
        self._thread = None

    def _run(self) -> None:
        while True:
            expired: list[tuple[int, weakref.ref[Any]]] = []
            with self._changed:
                now = time.monotonic()
                for key, (deadline, fd, connection) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[key]
                        expired.append((fd, connection))
                if not expired:
                    soonest = min((entry[0] for entry in self._watched.values()), default=None)
                    self._changed.wait(None if soonest is None else max(0.05, soonest - now))
                    continue
            for fd, connection in expired:  # outside the lock: watch() and done() never wait on a log write
                _shut_down(fd, connection)


def _shut_down(fd: int, connection_ref: weakref.ref[Any]) -> None:
    """End the connection under a blocked round trip, and only if that socket is still that connection's."""
    try:
        duplicate = os.dup(fd)  # first: while we hold it, the number cannot be reused under us
    except OSError:
        return  # already closed
    try:
        sock = socket.socket(fileno=duplicate)  # owns the duplicate from here on
    except OSError:
        os.close(duplicate)  # not a socket (any more)
        return
    with sock:  # closes the duplicate only; the driver still owns the original
        try:
            connection = connection_ref()
            if connection is None or connection.closed or connection.pgconn.socket != fd:
                return
            sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError, psycopg.Error):
            return
    log.warning("a database round trip got no answer for %.0f s; its connection was shut down", GUARD.deadline)


GUARD = StallGuard()
os.register_at_fork(after_in_child=GUARD.reset_after_fork)


def attach(engine: Engine) -> None:
    """Guard every round trip of a PostgreSQL engine's dialect (idempotent; the dialect is this engine's own)."""
    dialect = engine.dialect
    if not can_stall(dialect) or guarded(engine):
        return
    for name in _GUARDED:
        setattr(dialect, name, _guarded(getattr(dialect, name)))
    dialect._gateway_stall_guard = True  # type: ignore[attr-defined]


def guarded(engine: Engine) -> bool:
    """Whether ``attach`` guards this engine's round trips."""
    return bool(getattr(engine.dialect, "_gateway_stall_guard", False))


def _guarded(call: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(target: Any, *args: Any, **kwargs: Any) -> Any:
        connection = _dbapi_connection(target)
        key = id(target)
        watched = _watch(key, connection)
        try:
            return call(target, *args, **kwargs)
        finally:
            if watched:
                GUARD.done(key)

    return guarded


def _dbapi_connection(target: Any) -> Any:
    """do_execute* get a cursor; do_commit, do_rollback and do_ping a DBAPI connection or the pool's proxy of one."""
    if isinstance(target, psycopg.Connection):
        return target
    proxied = getattr(target, "dbapi_connection", None)
    if proxied is not None:
        return proxied
    return getattr(target, "connection", target)


def _watch(key: int, connection: Any) -> bool:
    try:
        fd = connection.pgconn.socket
    except (AttributeError, psycopg.Error):  # no socket (closed, or not psycopg): nothing to guard
        return False
    GUARD.watch(key, fd, connection)
    return True
