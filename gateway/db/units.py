"""The single way the application writes: write units, and the app's engine set-up.

Every write goes through ``write_transaction()`` (an ORM Session) or, on the
runs' hot path, ``write_connection()`` (a Core Connection): both are a
``WriteUnit``, and functions that write inside a caller's unit take one.  A
unit takes the write lock before it reads what it is about to change (on
SQLite ``BEGIN IMMEDIATE``, see ``gateway.db.dialect``), commits at the end,
and rolls back on any error.

How long a write unit waits for the write lock depends on who is waiting
(``_lock_patience``, the one place that tells them apart): a request's caller
gets its 503 within ``WRITE_LOCK_TIMEOUT_SECONDS`` (the in-process writer queue,
then SQLite's busy wait, or PostgreSQL's ``lock_timeout`` for the transaction);
background writers (a run's end, lease renewals, the reaper, output) record
what already happened and keep the long patience.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

from flask import Flask, current_app, has_request_context
from sqlalchemy.engine import Connection, CursorResult, Result
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, configure_mappers

from gateway.db import dialect, stall_guard
from gateway.platform.extensions import db

# A write unit as functions that write inside their caller's take it: the Session of
# ``write_transaction()`` or the Connection of ``write_connection()``.
WriteUnit: TypeAlias = Session | Connection

_IN_WRITE = "gateway_in_write"
_IN_WRITE_CONNECTION = "gateway_in_write_connection"
_AFTER_COMMIT = "gateway_after_commit"
# The open write_connection() units: connection -> its after-commit callbacks. Kept here, not in
# ``Connection.info``: reading that after a lost connection would reconnect just to answer.
_OPEN_UNITS: weakref.WeakKeyDictionary[Connection, list[Callable[[], None]]] = weakref.WeakKeyDictionary()


def rows_matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (the "did I win the race" check of a write).

    ``Session.execute`` is typed as returning a plain ``Result``; for a DML statement it is a
    ``CursorResult``, the one that carries ``rowcount``. Anything else is a programming error.
    """
    if not isinstance(result, CursorResult):
        raise TypeError(f"rows_matched() needs the result of an UPDATE or DELETE, not {type(result).__name__}")
    return result.rowcount


def init_app(app: Flask) -> None:
    """Set up the app's engine: the database's options and tuning, and the stall guard if ``DATABASE_STALL_GUARD``.

    The guard is on unless the app was built for a CLI command that may hold a
    statement for long (prunes, exports, migrations: ``manage.py`` sets it off).
    """
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = dialect.engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {})
    )
    db.init_app(app)
    # Mappers are otherwise configured by the first ORM query or constructor call; runs.detached_run
    # fills objects without the constructor, and may come first (a Core-only request path, a script).

    configure_mappers()
    with app.app_context():
        dialect.tune_engine(db.engine)
        if app.config.get("DATABASE_STALL_GUARD", True):
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
        with dialect.begin_immediate(patience.seconds):
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
                with dialect.begin_immediate(patience.seconds):
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


def on_commit(unit: WriteUnit, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the write unit ``unit`` has committed (never if it rolls back)."""
    pending = unit.info.get(_AFTER_COMMIT) if isinstance(unit, Session) else _OPEN_UNITS.get(unit)
    if pending is None:
        raise RuntimeError("on_commit() needs a write unit (write_transaction() or write_connection())")
    pending.append(callback)


def in_write(unit: WriteUnit) -> bool:
    """Whether ``unit`` is inside ``write_transaction()`` (a Session) or ``write_connection()``."""
    if isinstance(unit, Session):
        return bool(unit.info.get(_IN_WRITE))
    return unit in _OPEN_UNITS


def core(unit: WriteUnit) -> Connection:
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
    return _Patience(float(dialect.SQLITE_BUSY_TIMEOUT_SECONDS), bounded=False)


def _bound_lock_waits(connection: Connection, patience: _Patience) -> None:
    """Request units only: every lock the transaction waits for gives up in time (see ``dialect.bound_lock_waits``)."""
    if patience.bounded:
        dialect.bound_lock_waits(connection, patience.seconds)


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
    writer = dialect.writer_lock(session.get_bind().engine)
    if writer is not None and not writer.acquire(blocking=False):  # the queue is usually empty: no clock read
        queued = time.monotonic()
        if not writer.acquire(timeout=patience.seconds):
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked (by this process)"))
        if patience.bounded:
            patience.seconds = max(0.001, patience.seconds - (time.monotonic() - queued))
    return writer, patience
