"""Which data source URLs the query runner opens, and the engine for each: the one place that decides.

A URL is usable when SQLAlchemy can read it, its backend is SQLite,
PostgreSQL, MySQL or MariaDB, and the driver the runner puts behind it
(sqlite3 on a file, psycopg, PyMySQL) takes every option it names; any other
kind of database is refused.  ``url_problem`` says why a URL is not usable
without connecting (the catalogue's load, ``commands validate``, readiness);
``engine_for`` refuses the same URLs with the same words when a run gets that
far.  No message contains the URL: only its scheme or the names of its
options, and those only when they do not contain its password.

SQLite sources are opened with ``mode=ro`` (and ``PRAGMA query_only``) and an
authorizer that refuses ATTACH and setting PRAGMAs.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable

import pymysql
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy.engine import Engine, make_url

from gateway.platform.phrases import N_, Phrase
from gateway.runners import query_mysql

SUPPORTED = "sqlite, postgresql, mysql or mariadb"
_POSTGRESQL = ("postgresql", "postgres")
# What psycopg.connect takes besides the libpq options, and the options themselves.
_PSYCOPG_OPTIONS = frozenset(
    {entry.keyword.decode() for entry in pq.Conninfo.get_defaults()}
    | {"autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory"}
)
_PYMYSQL_OPTIONS = frozenset(inspect.signature(pymysql.connections.Connection).parameters)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


class QueryError(Exception):
    """The query failed; ``message`` is safe to show (no connection details), a phrase the run page translates."""

    def __init__(self, message: str, timed_out: bool = False, cancelled: bool = False):
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out
        self.cancelled = cancelled


def query_failed(problem: str) -> Phrase:
    """ "query failed: <problem>", the problem in the driver's (or this module's) words."""
    return N_("query failed: %(problem)s", problem=problem)


class _Unusable(Exception):
    """Why a URL cannot be a data source (``problem``: no URL text, no password)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


# PRAGMAs that take an argument yet only read (schema introspection); any other PRAGMA with an
# argument sets something (query_only = off, writable_schema, journal_mode...) and is denied.
_READ_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    """The engine's own gate for what ``mode=ro`` does not cover.

    ATTACH opens a *new* file read-write (and creates it) whatever the main
    database's mode, and a PRAGMA could switch ``query_only`` off; both are
    refused before they run.
    """
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and (arg1 or "").lower() not in _READ_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _sqlite_engine(url: sa.URL) -> Engine:
    path = url.database or ""
    # A URI filename: characters such as '?', '#' or '%' in the path must not be read as URI syntax.
    uri = f"file:{urllib.parse.quote(path)}?mode=ro"

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5)
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(_sqlite_authorizer)
        return connection

    return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)


def _postgresql_engine(url: sa.URL) -> Engine:
    url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


# The runner's dialect selection: URL backend -> (engine factory, options its driver takes).
_SELECTION: dict[str, tuple[Callable[[sa.URL], Engine], frozenset[str] | None]] = {
    "sqlite": (_sqlite_engine, None),
    **{backend: (_postgresql_engine, _PSYCOPG_OPTIONS) for backend in _POSTGRESQL},
    **{backend: (query_mysql.create_engine, _PYMYSQL_OPTIONS) for backend in query_mysql.BACKENDS},
}


def _shown(part: str, url: sa.URL | None) -> str:
    """A piece of the URL for a message, unless the URL's password is in it."""
    password = url.password if url is not None else None
    return "***" if password and str(password) in part else part


def _parsed(url_text: str) -> sa.URL:
    try:
        return make_url(url_text)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise _Unusable("the data source URL is not a database URL") from None


def _built(url_text: str) -> Engine:
    """The engine the runner uses for this URL (nothing connects yet), or ``_Unusable``."""
    url = _parsed(url_text)
    backend = url.get_backend_name()
    if backend not in _SELECTION:
        raise _Unusable(f"data sources of type {_shown(backend, url)!r} are not supported ({SUPPORTED})")
    factory, options = _SELECTION[backend]
    if options is None and url.database in (None, "", ":memory:"):
        raise _Unusable("the SQLite URL names no database file")
    try:
        engine = factory(url)
    except (sa.exc.ArgumentError, TypeError, ValueError):
        raise _Unusable("the driver cannot read the data source URL") from None
    try:
        if options is not None:
            _check_options(engine, options, url)
    except _Unusable:
        engine.dispose()
        raise
    return engine


def _check_options(engine: Engine, options: frozenset[str], url: sa.URL) -> None:
    """The driver's connect arguments as SQLAlchemy makes them from the URL: each one the driver takes."""
    try:
        _args, named = engine.dialect.create_connect_args(engine.url)
    except (sa.exc.ArgumentError, TypeError, ValueError):
        raise _Unusable("the driver cannot read the data source URL's options") from None
    unknown = sorted(_shown(name, url) for name in set(named) - options)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise _Unusable(f"the driver does not take the URL option{plural} {', '.join(map(repr, unknown))}")


def url_problem(url_text: str) -> str | None:
    """Why the query runner cannot use this data source URL (a message without the URL), or None."""
    try:
        _built(url_text).dispose()
    except _Unusable as unusable:
        return unusable.problem
    return None


def engine_for(url_text: str) -> Engine:
    """One engine per data source URL per process (PostgreSQL pools are worth keeping)."""
    with _engines_lock:
        engine = _engines.get(url_text)
        if engine is None:
            try:
                engine = _built(url_text)
            except _Unusable as unusable:
                raise QueryError(query_failed(unusable.problem)) from None
            _engines[url_text] = engine
        return engine
