"""The query runner: named data sources, bound parameters only, read-only where the engine allows.

SQLite sources are opened with ``mode=ro`` (and ``PRAGMA query_only``), so a
write statement is refused by the engine, not by string matching; a progress
handler enforces the statement timeout and cancellation.  Which URLs are
opened at all, and how, is ``gateway.runners.query_engines``.  PostgreSQL runs
every query in a ``READ ONLY`` transaction with ``statement_timeout`` set;
MySQL and MariaDB (``gateway.runners.query_mysql``) in a read-only transaction
with the server's statement time limit and a ``KILL QUERY`` on cancel.
Operators should also give the data source a read-only role (README).  Any
other kind of database is refused.

Values come back as JSON numbers, strings or null: decimals, dates and other
types as strings, booleans as ``"true"``/``"false"``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.catalogue import Command
from gateway.catalogue.model import BIND_PARAM
from gateway.platform.phrases import N_
from gateway.runners import query_mysql
from gateway.runners.base import Outcome, Output, RunContext
from gateway.runners.query_engines import QueryError, engine_for, query_failed


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "truncated": self.truncated}


def json_value(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def run_query(
    url_text: str,
    sql: str,
    params: Mapping[str, Any],
    *,
    row_limit: int,
    statement_timeout: float,
    cancel: threading.Event | None = None,
) -> QueryResult:
    engine = engine_for(url_text)
    cancel = cancel or threading.Event()
    if engine.dialect.name == "sqlite":
        return _run_sqlite(engine, sql, params, row_limit, statement_timeout, cancel)
    if engine.dialect.name in query_mysql.BACKENDS:
        return _run_mysql(engine, sql, params, row_limit, statement_timeout, cancel)
    return _run_postgresql(engine, sql, params, row_limit, statement_timeout, cancel)


def statement(sql: str, params: Mapping[str, Any]) -> sa.TextClause:
    """The command's SQL with its named binds; a list value (a ``multiple`` choice, written ``IN :name``) is an
    expanding bind: SQLAlchemy renders one placeholder per item and binds each item on its own, never as text."""
    used = set(BIND_PARAM.findall(sql))
    lists = [name for name in sorted(used) if isinstance(params.get(name), list)]
    expanding: list[sa.BindParameter[Any]] = [sa.bindparam(name, expanding=True) for name in lists]
    return sa.text(sql).bindparams(*expanding)


def _fetch(result: sa.CursorResult[Any], row_limit: int) -> QueryResult:
    if not result.returns_rows:
        return QueryResult(columns=[], rows=[], truncated=False)
    columns = list(result.keys())
    rows = result.fetchmany(row_limit + 1)
    truncated = len(rows) > row_limit
    return QueryResult(
        columns=columns, rows=[[json_value(v) for v in row] for row in rows[:row_limit]], truncated=truncated
    )


@contextlib.contextmanager
def _connect(engine: Engine) -> Iterator[sa.Connection]:
    """A connection, or a ``QueryError`` that names no host, user or password.

    A missing SQLite file or an unreachable server is an ordinary failed run,
    not an exception escaping into the worker.
    """
    try:
        connection = engine.connect()
    except sa.exc.DBAPIError:
        raise QueryError(N_("query failed: cannot connect to the data source")) from None
    with connection:
        yield connection


def _dbapi(connection: sa.Connection) -> Any:
    """The driver's own connection (progress handler, cancel); always there on a checked-out connection."""
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the data source connection was invalidated")
    return raw


def _run_sqlite(
    engine: Engine, sql: str, params: Mapping[str, Any], row_limit: int, timeout: float, cancel: threading.Event
) -> QueryResult:
    deadline = time.monotonic() + timeout
    state: dict[str, str | None] = {"reason": None}

    def progress() -> int:
        if cancel.is_set():
            state["reason"] = "cancelled"
            return 1
        if time.monotonic() > deadline:
            state["reason"] = "timed_out"
            return 1
        return 0

    with _connect(engine) as connection:
        raw = _dbapi(connection)
        raw.set_progress_handler(progress, 1000)
        try:
            return _fetch(connection.execute(statement(sql, params), dict(params)), row_limit)
        except sa.exc.DBAPIError as exc:
            raise _query_error(exc, state["reason"], timeout) from None
        finally:
            raw.set_progress_handler(None, 0)


_ROW_QUERY = re.compile(r"\s*\(*\s*(SELECT|WITH|VALUES|TABLE)\b", re.IGNORECASE)


def _stream_options(sql: str, row_limit: int) -> dict[str, Any]:
    """A server-side cursor for a statement that plainly returns rows, so only row_limit + 1 rows reach us.

    psycopg declares a cursor for every streamed statement, which only works
    for row queries; anything else (e.g. a write, which the read-only
    transaction then refuses with a clear message) runs on a plain cursor.
    This is about memory, not safety.
    """
    if _ROW_QUERY.match(sql):
        return {"stream_results": True, "max_row_buffer": min(row_limit + 1, 1000)}
    return {}


def _run_postgresql(
    engine: Engine, sql: str, params: Mapping[str, Any], row_limit: int, timeout: float, cancel: threading.Event
) -> QueryResult:
    with _connect(engine) as connection:
        connection = connection.execution_options(postgresql_readonly=True)
        raw = _dbapi(connection)
        finished = threading.Event()
        reason: dict[str, str | None] = {"value": None}

        def watch() -> None:
            while not finished.wait(0.1):
                if cancel.is_set():
                    reason["value"] = "cancelled"
                    raw.cancel()
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            with connection.begin():
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
                options = _stream_options(sql, row_limit)
                result = connection.execute(statement(sql, params), dict(params), execution_options=options)
                return _fetch(result, row_limit)
        except sa.exc.DBAPIError as exc:
            code = getattr(exc.orig, "sqlstate", None)
            timed_out = code == "57014" and reason["value"] != "cancelled"
            raise _query_error(exc, reason["value"] or ("timed_out" if timed_out else None), timeout) from None
        finally:
            finished.set()


def _run_mysql(
    engine: Engine, sql: str, params: Mapping[str, Any], row_limit: int, timeout: float, cancel: threading.Event
) -> QueryResult:
    with _connect(engine) as connection:
        guard = query_mysql.Guard(connection, timeout, row_limit + 1, cancel)
        try:
            with guard:
                options = _stream_options(sql, row_limit)
                result = connection.execute(statement(sql, params), dict(params), execution_options=options)
                with result:  # a streamed result is closed before the connection (PyMySQL reads what is left)
                    return _fetch(result, row_limit)
        except sa.exc.DBAPIError as exc:
            reason = guard.reason_for(exc)
            if reason is None:
                raise QueryError(query_failed(query_mysql.error_text(exc))) from None
            raise _query_error(exc, reason, timeout) from None


def _query_error(exc: sa.exc.DBAPIError, reason: str | None, timeout: float) -> QueryError:
    if reason == "timed_out":
        return QueryError(N_("query timed out after %(seconds)s s", seconds=timeout), timed_out=True)
    if reason == "cancelled":
        return QueryError(N_("query cancelled"), cancelled=True)
    # The driver's first line names the problem (e.g. "attempt to write a readonly database")
    # without connection details; it stays in the driver's words on every page.
    first_line: str = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else "query failed"
    if first_line == "not authorized":  # our SQLite authorizer (ATTACH, DETACH, a PRAGMA that sets)
        first_line = N_("not authorized: the data source is readonly (no ATTACH, DETACH or PRAGMA settings)")
    return QueryError(query_failed(first_line))


@dataclass(frozen=True)
class QueryPlan:
    url: str
    sql: str
    params: dict[str, Any]
    row_limit: int
    statement_timeout: float


class QueryRunner:
    """The ``query`` kind: the command's SQL with bound parameters against a named data source."""

    def plan(self, command: Command, values: Mapping[str, Any], context: RunContext) -> QueryPlan:
        name = command.datasource or ""
        source = context.catalogue.datasources[name]
        return QueryPlan(
            url=context.catalogue.datasource_urls[name],
            sql=command.sql or "",
            params=dict(values),
            row_limit=source.row_limit,
            statement_timeout=min(source.statement_timeout, context.timeout),
        )

    def run(self, plan: QueryPlan, output: Output, cancel: threading.Event) -> Outcome:
        try:
            result = run_query(
                plan.url, plan.sql, plan.params, row_limit=plan.row_limit,
                statement_timeout=plan.statement_timeout, cancel=cancel,
            )  # fmt: skip
        except QueryError as exc:
            status = "timed_out" if exc.timed_out else "cancelled" if exc.cancelled else "failed"
            return Outcome(status=status, error=exc.message)
        body = json.dumps(result.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return Outcome(
            status="succeeded", exit_code=0, result=result.as_dict(), output_sha256=hashlib.sha256(body).hexdigest()
        )
