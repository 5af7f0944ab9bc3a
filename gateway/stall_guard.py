"""A client-side deadline for PostgreSQL statements issued while serving a request.

libpq has a connect timeout but no read timeout: when the link to the server
stalls (a hung server, a middlebox that accepts and never answers, a
partition where the kernel still acknowledges), a statement on a pooled
connection waits for as long as the stall lasts, and so does the request
holding it. TCP keepalives and ``tcp_user_timeout`` do not help while the
other side's kernel still answers, and PostgreSQL's own ``statement_timeout``
is enforced by the server that is not answering.

So a watchdog thread shuts down the socket of a statement that has not
returned after ``STATEMENT_DEADLINE_SECONDS``. The driver's blocked wait then
sees end-of-file, psycopg raises ``OperationalError`` (a disconnect, so the
pool discards that connection), and the request answers 503 like any other
database outage. The pool's pre-ping at checkout is watched too (it is where a
request meets a stalled link first). Watched: statements of requests and of the
gateway's own threads (executor, supervisor, probes), none of which comes near
the deadline; not the CLI, whose prunes and migrations may legitimately run longer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from typing import Any

import psycopg
from flask import has_request_context
from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

STATEMENT_DEADLINE_SECONDS = 20.0


class StallGuard:
    """Statements in flight (cursor id -> deadline and socket) and the thread that ends stalled ones."""

    def __init__(self, deadline: float = STATEMENT_DEADLINE_SECONDS) -> None:
        self.deadline = deadline
        self._watched: dict[int, tuple[float, int, weakref.ref[Any]]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, cursor_id: int, fd: int, connection: Any) -> None:
        with self._changed:
            self._watched[cursor_id] = (time.monotonic() + self.deadline, fd, weakref.ref(connection))
            self._ensure_thread()
            if len(self._watched) == 1:
                self._changed.notify()

    def done(self, cursor_id: int) -> None:
        with self._changed:
            self._watched.pop(cursor_id, None)

    def _ensure_thread(self) -> None:
        # A forked process (a gunicorn worker) does not inherit the parent's thread.
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="gateway-stall-guard", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for cursor_id, (deadline, fd, connection) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[cursor_id]
                        if _still_on(connection(), fd):
                            _shut_down(fd)
                soonest = min((entry[0] for entry in self._watched.values()), default=None)
                self._changed.wait(None if soonest is None else max(0.05, soonest - now))


def _still_on(connection: Any, fd: int) -> bool:
    """The socket is still that connection's: a number the kernel reused for something else is never touched."""
    try:
        return connection is not None and not connection.closed and connection.pgconn.socket == fd
    except (AttributeError, psycopg.Error):
        return False


def _shut_down(fd: int) -> None:
    """End the connection under a blocked statement; done under the guard's lock, so never after ``done``."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return  # already closed
    try:
        sock.shutdown(socket.SHUT_RDWR)
        log.warning("a database statement got no answer for %.0f s; its connection was shut down", GUARD.deadline)
    except OSError:
        pass
    finally:
        sock.close()  # closes the duplicate only; the driver still owns the original


GUARD = StallGuard()


def attach(engine: Engine) -> None:
    """Watch statements and pre-pings on a PostgreSQL engine (idempotent)."""
    if engine.dialect.name != "postgresql" or event.contains(engine, "before_cursor_execute", _before):
        return
    event.listen(engine, "before_cursor_execute", _before)
    event.listen(engine, "after_cursor_execute", _after)
    event.listen(engine, "handle_error", _on_error)
    # The pre-ping runs below the event layer; this engine's dialect gets a guarded one.
    ping = engine.dialect.do_ping

    def guarded_ping(dbapi_connection: Any) -> bool:
        watched = _watch(id(dbapi_connection), dbapi_connection)
        try:
            return bool(ping(dbapi_connection))
        finally:
            if watched:
                GUARD.done(id(dbapi_connection))

    engine.dialect.do_ping = guarded_ping  # type: ignore[method-assign]


def _watched_here() -> bool:
    return has_request_context() or threading.current_thread().name.startswith(WATCHED_THREADS)


WATCHED_THREADS = ("gateway-", "health_")


def _watch(key: int, dbapi_connection: Any) -> bool:
    if not _watched_here():
        return False
    try:
        fd = dbapi_connection.pgconn.socket
    except (AttributeError, psycopg.Error):  # no socket (closed, or not psycopg): nothing to guard
        return False
    GUARD.watch(key, fd, dbapi_connection)
    return True


def _before(conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: bool) -> None:
    _watch(id(cursor), cursor.connection)


def _after(conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: bool) -> None:
    GUARD.done(id(cursor))


def _on_error(context: Any) -> None:
    cursor = getattr(context, "cursor", None)  # absent when the pre-ping failed (guarded_ping cleans up)
    if cursor is not None:
        GUARD.done(id(cursor))
