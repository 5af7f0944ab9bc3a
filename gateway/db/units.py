"""Database engine tuning and the single way the application writes.

SQLite is the embedded default, so its connections get WAL, ``synchronous=FULL``
and a busy timeout, and the pysqlite driver's own transaction handling is
replaced by explicit ``BEGIN`` statements: that is what lets a write unit start
with ``BEGIN IMMEDIATE`` and take the write lock *before* it reads anything
(the audit chain head in particular).  Every write goes through
``write_transaction()`` (or, on the runs' hot path, ``write_connection()``) so
that rule holds everywhere.

The BEGIN is issued by the dialect's ``do_begin``, not by a ``begin`` event
listener: any connection event on the engine sends every statement through
SQLAlchemy's event dispatch (before/after execute, before/after cursor
execute), which cost a fifth of a run's CPU.

How long a write unit waits for the write lock depends on who is waiting
(``_lock_patience``, the one place that tells them apart): a request's caller
gets its 503 within ``WRITE_LOCK_TIMEOUT_SECONDS`` (the in-process writer queue,
then SQLite's busy wait, or PostgreSQL's ``lock_timeout`` for the transaction);
background writers (a run's end, lease renewals, the reaper, output) record
what already happened and keep the long patience.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, has_request_context
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, configure_mappers

from gateway.db import stall_guard
from gateway.platform.extensions import db

# Background writers' patience for the write lock (SQLite's busy timeout; the in-process writer queue).
SQLITE_BUSY_TIMEOUT_SECONDS = 30
# Set by a write unit while it begins its transaction (``busy_ms``): BEGIN IMMEDIATE instead of
# BEGIN, after that busy timeout (milliseconds) on the connection.
_BEGIN_MODE = threading.local()
# The busy timeout a pooled SQLite connection has now, in its record's ``info`` (set only when it changes).
_BUSY_MS = "gateway_busy_ms"
# A request unit's bound on lock waits in its PostgreSQL transaction (SET LOCAL, with a bound parameter).
_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :value, true)")
_IN_WRITE = "gateway_in_write"
_IN_WRITE_CONNECTION = "gateway_in_write_connection"
_AFTER_COMMIT = "gateway_after_commit"
# The open write_connection() units: connection -> its after-commit callbacks. Kept here, not in
# ``Connection.info``: reading that after a lost connection would reconnect just to answer.
_OPEN_UNITS: weakref.WeakKeyDictionary[Connection, list[Callable[[], None]]] = weakref.WeakKeyDictionary()
# Engines whose listeners are attached (weak: a test's engine goes away with its app).
_TUNED: weakref.WeakSet[Engine] = weakref.WeakSet()
# One writer at a time per SQLite file within this process (see _writer_lock).
_SQLITE_WRITERS: dict[str, threading.Lock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()


def engine_options(database_url: str, base: dict[str, Any]) -> dict[str, Any]:
    """Engine keyword arguments for the configured backend."""
    options = dict(base)
    connect_args = dict(options.get("connect_args", {}))
    if database_url.startswith("sqlite"):
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_SECONDS)
        connect_args.setdefault("check_same_thread", False)
        # A file cannot drop the connection: a ping would be one more statement per transaction.
        options.pop("pool_pre_ping", None)
    else:
        connect_args.setdefault("connect_timeout", 3)
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 20)
        options.setdefault("pool_timeout", 10)
    options["connect_args"] = connect_args
    return options


def rows_matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (the "did I win the race" check of a write).

    ``Session.execute`` is typed as returning a plain ``Result``; for a DML statement it is a
    ``CursorResult``, the one that carries ``rowcount``. Anything else is a programming error.
    """
    if not isinstance(result, CursorResult):
        raise TypeError(f"rows_matched() needs the result of an UPDATE or DELETE, not {type(result).__name__}")
    return result.rowcount


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def tune_engine(engine: Engine) -> None:
    """Attach the SQLite connection pragmas and explicit BEGIN handling (idempotent)."""
    if not is_sqlite(engine) or engine in _TUNED:
        return
    _TUNED.add(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        record.info[_BUSY_MS] = SQLITE_BUSY_TIMEOUT_SECONDS * 1000
        _make_private(engine.url.database)

    engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign]


def _sqlite_begin(dbapi_connection: Any) -> None:
    """The SQLite dialect's ``do_begin`` (pysqlite's own is a no-op once it stopped managing transactions).

    ``dbapi_connection`` is the pool's proxy: its ``info`` lives as long as the
    DBAPI connection, so the busy timeout is set only when a unit wants another one.
    """
    busy_ms: int | None = getattr(_BEGIN_MODE, "busy_ms", None)
    cursor = dbapi_connection.cursor()
    try:
        if busy_ms is None:
            cursor.execute("BEGIN")
            return
        info = getattr(dbapi_connection, "info", {})
        if info.get(_BUSY_MS) != busy_ms:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")  # a whole number: PRAGMA takes no parameters
            info[_BUSY_MS] = busy_ms
        cursor.execute("BEGIN IMMEDIATE")
    finally:
        cursor.close()


@contextmanager
def _begin_immediate(patience: float) -> Iterator[None]:
    """Transactions begun in this thread meanwhile take SQLite's write lock at once, waiting ``patience`` s at most."""
    _BEGIN_MODE.busy_ms = max(1, int(patience * 1000))
    try:
        yield
    finally:
        _BEGIN_MODE.busy_ms = None


def _make_private(database: str | None) -> None:
    """The SQLite file and its WAL companions are readable by the gateway's user only."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    for suffix in ("", "-wal", "-shm"):
        path = database + suffix
        if os.path.exists(path) and os.stat(path).st_uid == os.geteuid():
            os.chmod(path, 0o600)


def init_app(app: Flask) -> None:
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {})
    )
    db.init_app(app)
    # Mappers are otherwise configured by the first ORM query or constructor call; runs.detached_run
    # fills objects without the constructor, and may come first (a Core-only request path, a script).

    configure_mappers()
    with app.app_context():
        tune_engine(db.engine)
        stall_guard.attach(db.engine)


@contextmanager
def write_transaction(session: Session | None = None) -> Iterator[Session]:
    """One write unit: takes the write lock first (SQLite), commits at the end, rolls back on error.

    A read transaction the request already has open is ended first, so the
    write lock is always taken before the unit reads what it is about to change.
    Callbacks registered with ``on_commit()`` run after a successful commit only.
    """
    session = session or db.session()
    writer, patience = _enter_unit(session)
    callbacks: list[Callable[[], None]] = []
    session.info[_IN_WRITE] = True
    session.info[_AFTER_COMMIT] = callbacks
    try:
        with _begin_immediate(patience.seconds):
            connection = session.connection()
        _bound_lock_waits(connection, patience)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info[_IN_WRITE] = False
        session.info.pop(_AFTER_COMMIT, None)
        if writer is not None:
            writer.release()
    for callback in callbacks:
        callback()


@contextmanager
def write_connection() -> Iterator[Connection]:
    """The hot path's write unit: ``write_transaction()`` on a Core connection, no ORM session.

    For the statements every run writes (its row and its two ledger events):
    there the Session's unit-of-work bookkeeping cost more than the commit
    itself.  Same rules: on SQLite the in-process writer queue, then
    ``BEGIN IMMEDIATE`` (the write lock before anything is read); one commit at
    the end, a rollback on any error.  The request's session is not used, but a
    read transaction it has open is ended first (the session does not expire
    what it loaded on commit), so what it reads next includes this write.
    Callbacks registered with ``on_commit()`` run after a successful commit only.
    """
    session = db.session()
    writer, patience = _enter_unit(session)
    callbacks: list[Callable[[], None]] = []
    try:
        # Marked on the session too: a write_transaction() opened inside would wait for this writer forever.
        session.info[_IN_WRITE_CONNECTION] = True
        with session.get_bind().engine.connect() as connection:
            _OPEN_UNITS[connection] = callbacks
            try:
                with _begin_immediate(patience.seconds):
                    transaction = connection.begin()
                with transaction:
                    _bound_lock_waits(connection, patience)
                    yield connection
            finally:
                _OPEN_UNITS.pop(connection, None)
    finally:
        session.info.pop(_IN_WRITE_CONNECTION, None)
        if writer is not None:
            writer.release()
    for callback in callbacks:
        callback()


def on_commit(unit: Session | Connection, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the write unit ``unit`` has committed (never if it rolls back)."""
    pending = unit.info.get(_AFTER_COMMIT) if isinstance(unit, Session) else _OPEN_UNITS.get(unit)
    if pending is None:
        raise RuntimeError("on_commit() needs a write unit (write_transaction() or write_connection())")
    pending.append(callback)


def in_write(unit: Session | Connection) -> bool:
    """Whether ``unit`` is inside ``write_transaction()`` (a Session) or ``write_connection()``."""
    if isinstance(unit, Session):
        return bool(unit.info.get(_IN_WRITE))
    return unit in _OPEN_UNITS


def core(unit: Session | Connection) -> Connection:
    """The Core connection a write unit's statements go through."""
    return unit.connection() if isinstance(unit, Session) else unit


@dataclass(slots=True)
class _Patience:
    """How long a write unit may still wait for the database's write lock, and whether that is a request's bound."""

    seconds: float
    bounded: bool


def _lock_patience() -> _Patience:
    """Request or background: the one place a write unit's wait for the write lock is decided.

    A request's caller is waiting for an answer (a 503 in bounded time beats a
    hang past the client's own timeout); a background writer records what has
    already happened (a run's end, a lease) and must not give up early.
    """
    if has_request_context():
        return _Patience(float(current_app.config["WRITE_LOCK_TIMEOUT_SECONDS"]), bounded=True)
    return _Patience(float(SQLITE_BUSY_TIMEOUT_SECONDS), bounded=False)


def _bound_lock_waits(connection: Connection, patience: _Patience) -> None:
    """PostgreSQL, request units only: every lock the transaction waits for (the ledger's above all) gives up in time.

    The error (``55P03``, an ``OperationalError``) answers 503 like any database
    that cannot serve now. SQLite's bound was set as the transaction began.
    """
    if patience.bounded and connection.dialect.name == "postgresql":
        connection.execute(_LOCK_TIMEOUT, {"value": f"{max(1, int(patience.seconds * 1000))}ms"})


def _enter_unit(session: Session) -> tuple[threading.Lock | None, _Patience]:
    """What both write units do first: returns the SQLite writer lock taken (None on PostgreSQL) and the patience left.

    Refuse nesting (on SQLite a nested unit would wait for its own writer) and
    changes made outside a unit; end a read transaction the session has open,
    so the write lock is taken before the unit reads what it is about to change.
    A request's time in the writer queue counts against its bound.
    """
    if session.info.get(_IN_WRITE) or session.info.get(_IN_WRITE_CONNECTION):
        raise RuntimeError("write units do not nest")
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("changes were made outside write_transaction()")
    if session.in_transaction():
        session.commit()
    patience = _lock_patience()
    writer = _writer_lock(session.get_bind().engine)
    if writer is not None and not writer.acquire(blocking=False):  # the queue is usually empty: no clock read
        queued = time.monotonic()
        if not writer.acquire(timeout=patience.seconds):
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked (by this process)"))
        if patience.bounded:
            patience.seconds = max(0.001, patience.seconds - (time.monotonic() - queued))
    return writer, patience


def _writer_lock(engine: Engine) -> threading.Lock | None:
    """The in-process queue for a SQLite file's write lock.

    Threads of one process that meet at ``BEGIN IMMEDIATE`` would otherwise wait
    in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between tries: the
    handoff of a Python lock takes microseconds. Other processes (the CLI, other
    gunicorn workers) still meet at SQLite's lock, under its busy timeout.
    """
    if engine.dialect.name != "sqlite":
        return None
    key = engine.url.render_as_string(hide_password=False)
    lock = _SQLITE_WRITERS.get(key)
    if lock is None:
        with _SQLITE_WRITERS_GUARD:
            lock = _SQLITE_WRITERS.setdefault(key, threading.Lock())
    return lock
