"""Every difference between the gateway's two databases, SQLite and PostgreSQL, in one place.

Code elsewhere asks a question that says what it needs (does the database
take one writer at a time? is there a server clock? can it notify other
replicas?) and never compares engine names itself: so the list of
differences below is the whole of them, and a third engine would be taught
here.

SQLite is the embedded default: one file, one writer at a time (``BEGIN
IMMEDIATE`` takes the write lock before a unit reads anything), this host's
clock, no server to notify through, datetimes and JSON stored as text.
PostgreSQL serves several replicas: advisory locks order the writers that
must not interleave, ``clock_timestamp()`` is the clock every replica shares,
LISTEN/NOTIFY wakes the others, a statement waits on a network link (which
the stall guard watches) and its lock waits are bounded with ``lock_timeout``.

Questions take a "bind": an engine, a connection, a session, a dialect, or a
database URL (as text or ``URL``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import event, func, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

from gateway.platform.timeutil import as_utc, utcnow

Bind: TypeAlias = Connection | Dialect | Engine | Session | scoped_session[Session] | URL | str

# Background writers' patience for SQLite's write lock (its busy timeout; the in-process writer queue).
SQLITE_BUSY_TIMEOUT_SECONDS = 30
# Set by a write unit while it begins its transaction (``busy_ms``): BEGIN IMMEDIATE instead of
# BEGIN, after that busy timeout (milliseconds) on the connection.
_BEGIN_MODE = threading.local()
# The busy timeout a pooled SQLite connection has now, in its record's ``info`` (set only when it changes).
_BUSY_MS = "gateway_busy_ms"
# Engines whose SQLite set-up is attached (weak: a test's engine goes away with its app).
_TUNED: weakref.WeakSet[Engine] = weakref.WeakSet()
# One writer at a time per SQLite file within this process (see writer_lock).
_SQLITE_WRITERS: dict[str, threading.Lock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()

# PostgreSQL statements.
_XACT_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :value, true)")  # SET LOCAL, with a bound parameter
_CLOCK = text("SELECT clock_timestamp()")
_READ_ONLY = "SELECT current_setting('transaction_read_only')"


def _backend(bind: Bind) -> str:
    """The engine's name ("sqlite", "postgresql"); connections first: the hot path asks with one."""
    if isinstance(bind, (Connection, Engine)):
        return bind.dialect.name
    if isinstance(bind, Dialect):
        return bind.name
    if isinstance(bind, Session | scoped_session):  # a request's ``db.session`` is the scoped one
        return bind.get_bind().dialect.name
    return make_url(bind).get_backend_name()


def _is_sqlite(bind: Bind) -> bool:
    return _backend(bind) == "sqlite"


# --- engine set-up ----------------------------------------------------------------------------


def engine_options(database_url: str, base: dict[str, Any]) -> dict[str, Any]:
    """Engine keyword arguments for the configured database (``base``: the app's own, kept where set)."""
    options = dict(base)
    connect_args = dict(options.get("connect_args", {}))
    if _is_sqlite(database_url):
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


def tune_engine(engine: Engine) -> None:
    """SQLite: connection pragmas (WAL, ``synchronous=FULL``, busy timeout) and explicit BEGIN (idempotent).

    The pysqlite driver's own transaction handling is replaced by explicit
    ``BEGIN`` statements, which is what lets a write unit begin with ``BEGIN
    IMMEDIATE``.  The BEGIN is issued by the dialect's ``do_begin``, not by a
    ``begin`` event listener: any connection event on the engine sends every
    statement through SQLAlchemy's event dispatch, which cost a fifth of a
    run's CPU.  PostgreSQL: a failed pool pre-ping closes its connection (``closing_ping``).
    """
    if engine in _TUNED:
        return
    _TUNED.add(engine)
    if not _is_sqlite(engine):
        engine.dialect.do_ping = closing_ping(engine.dialect.do_ping)  # type: ignore[method-assign]
        return

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
        _make_private(sqlite_file(engine.url))

    engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign]


def closing_ping(ping: Any) -> Any:
    """A pre-ping that closes its connection when it fails in any way, so the pool reads a disconnect.

    When the link dies during the ping, psycopg may raise ``ProgrammingError`` ("can't change
    'autocommit' now") while SQLAlchemy restores autocommit, which SQLAlchemy does not read as
    a disconnect: the request got a 500 instead of a fresh connection or a 503. A closed
    connection is always a disconnect, and a connection whose ping failed serves nobody.
    """

    def do_ping(dbapi_connection: Any) -> Any:
        try:
            return ping(dbapi_connection)
        except Exception:
            dbapi_connection.close()
            raise

    return do_ping


def sqlite_file(url: URL | str) -> str | None:
    """The SQLite database file's path, or None (another engine, an in-memory or a ``file:`` URI database)."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        return None
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def _make_private(path: str | None) -> None:
    """The SQLite file and its WAL companions are readable by the gateway's user only."""
    if path is None:
        return
    for suffix in ("", "-wal", "-shm"):
        name = path + suffix
        if os.path.exists(name) and os.stat(name).st_uid == os.geteuid():
            os.chmod(name, 0o600)


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


# --- write units: the write lock, lock waits, ordering locks ---------------------------------


@contextmanager
def begin_immediate(patience: float) -> Iterator[None]:
    """SQLite: transactions begun in this thread meanwhile take the write lock at once, waiting ``patience`` s at most.

    (On PostgreSQL the flag is never read: its ``do_begin`` is its own.)
    """
    _BEGIN_MODE.busy_ms = max(1, int(patience * 1000))
    try:
        yield
    finally:
        _BEGIN_MODE.busy_ms = None


def writer_lock(engine: Engine) -> threading.Lock | None:
    """The in-process queue for a SQLite file's write lock; None on PostgreSQL (row locks, many writers).

    Threads of one process that meet at ``BEGIN IMMEDIATE`` would otherwise wait
    in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between tries: the
    handoff of a Python lock takes microseconds. Other processes (the CLI, other
    gunicorn workers) still meet at SQLite's lock, under its busy timeout.
    """
    if not _is_sqlite(engine):
        return None
    key = engine.url.render_as_string(hide_password=False)
    lock = _SQLITE_WRITERS.get(key)
    if lock is None:
        with _SQLITE_WRITERS_GUARD:
            lock = _SQLITE_WRITERS.setdefault(key, threading.Lock())
    return lock


def bound_lock_waits(connection: Connection, seconds: float) -> None:
    """PostgreSQL: every lock this transaction waits for (the ledger's above all) gives up after ``seconds``.

    The error (``55P03``, an ``OperationalError``) answers 503 like any database
    that cannot serve now. SQLite's bound is the busy timeout set as the
    transaction began (``begin_immediate``): nothing to do here.
    """
    if not _is_sqlite(connection):
        connection.execute(_LOCK_TIMEOUT, {"value": f"{max(1, int(seconds * 1000))}ms"})


def transaction_lock(connection: Connection, key: int | str) -> None:
    """Serialise the writers that share ``key`` until this transaction ends (across replicas).

    PostgreSQL: ``pg_advisory_xact_lock`` on the key (a name is hashed to one).
    SQLite: nothing to take, the write unit began with ``BEGIN IMMEDIATE`` and
    holds the database's only write lock.
    """
    if _is_sqlite(connection):
        return
    if isinstance(key, str):
        key = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    connection.execute(_XACT_LOCK, {"key": key})


def batches_writes(bind: Bind) -> bool:
    """Whether several runs' rows may share one commit (SQLite).

    With one writer at a time every commit waits its turn anyway, so one commit
    for many costs less. Not on PostgreSQL: one UPDATE of several runs' rows
    would take their row locks in its own order (a deadlock with another
    writer's) and wait for any of them that is busy.
    """
    return _is_sqlite(bind)


# --- the clock --------------------------------------------------------------------------------


def has_server_clock(bind: Bind) -> bool:
    """Whether the database has a clock of its own that every replica shares (PostgreSQL's ``clock_timestamp()``).

    SQLite has no server: its clock is this host's, the only host writing the file.
    """
    return not _is_sqlite(bind)


def server_clock() -> ColumnElement[datetime]:
    """The shared clock inside a statement (``clock_timestamp()``), where ``has_server_clock``: no extra round trip."""
    return func.clock_timestamp()


def database_now(bind: Connection | Session) -> datetime:
    """The database clock, so leases mean the same on every replica.

    On SQLite, asking it would cost a statement and return what ``utcnow()`` does.
    """
    if not has_server_clock(bind):
        return utcnow()
    return as_utc(bind.scalar(_CLOCK))


# --- how values are stored and found ---------------------------------------------------------


def stores_text(bind: Bind) -> bool:
    """Whether datetimes and JSON are stored as text (SQLite: naive UTC text, JSON as written) rather than typed."""
    return _is_sqlite(bind)


def text_index_is_a_table(bind: Bind) -> bool:
    """Whether the audit params' substring index is a table of its own to join (SQLite's FTS5, trigram tokenizer).

    PostgreSQL's is a GIN trigram index on the column, which its planner uses by itself.
    """
    return _is_sqlite(bind)


def insert_unless_present(bind: Bind, table: Any, index_elements: list[str]) -> Insert:
    """An INSERT that does nothing when a row with the same ``index_elements`` exists (``ON CONFLICT DO NOTHING``).

    ``table``: a table or a mapped class. Give the statement its ``.values(...)``; a
    concurrent twin then costs no unique violation.
    """
    insert = sqlite.insert if _is_sqlite(bind) else postgresql.insert
    statement: Insert = insert(table).on_conflict_do_nothing(index_elements=index_elements)
    return statement


def prepared_on_cursor(bind: Bind) -> bool:
    """Whether hot-path statements may skip SQLAlchemy's execution layer (SQLite; see ``gateway.db.prepared``).

    PostgreSQL's round trips need what that layer does: the stall guard and the
    disconnect handling (invalidate, then the pool reconnects).
    """
    return _is_sqlite(bind)


# --- the server -------------------------------------------------------------------------------


def can_stall(bind: Bind) -> bool:
    """Whether a round trip crosses a network link that may go silent (PostgreSQL; a file cannot)."""
    return _backend(bind) == "postgresql"


def has_notify(bind: Bind) -> bool:
    """Whether writers can wake other processes through the database (PostgreSQL's LISTEN/NOTIFY).

    On SQLite there is one serving process and nothing to wake.
    """
    return _backend(bind) == "postgresql"


def accepts_writes(connection: Connection) -> bool:
    """Whether the database would take a write now (a reachable database that only reads is not ready).

    PostgreSQL reports a read-only session (a standby after failover, or
    ``default_transaction_read_only``) in ``transaction_read_only``; SQLite
    answers a statement (its free disk space is the caller's to check).
    """
    if _is_sqlite(connection):
        connection.exec_driver_sql("SELECT 1")
        return True
    return connection.exec_driver_sql(_READ_ONLY).scalar() != "on"
