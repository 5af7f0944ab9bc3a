"""The query runner's MySQL / MariaDB dialect: one read-only, time-limited statement that can be killed.

Each run gets a fresh connection (no pool) whose session is read-only from the
start (``SET SESSION TRANSACTION READ ONLY``, so a DDL statement's implicit
commit cannot step out of the read-only transaction), and runs its statement
inside ``START TRANSACTION READ ONLY``.  The time limit is the server's:
``SET STATEMENT max_statement_time=<s> FOR …`` on MariaDB, the session's
``max_execution_time`` on MySQL 5.7.8 and later (which limits SELECT only).  A
``KILL QUERY`` from a second connection stops the statement when the run is
cancelled, or when it is still going a moment past its limit (a statement the
server does not limit).  ``sql_select_limit`` keeps the server from sending
more rows than the run keeps.  The connection is closed when the run ends:
nothing a statement changed in its session (variables, locks, temporary
tables) outlives the run, and a late ``KILL QUERY`` cannot reach another run's
statement.

``gateway.runners.query`` picks this module by the URL's backend; it imports
nothing of the runner.
"""

from __future__ import annotations

import math
import re
import threading
import time
from types import TracebackType
from typing import Any

import pymysql
import sqlalchemy as sa
from pymysql.constants import FIELD_TYPE
from sqlalchemy.dialects.mysql.base import MySQLDialect
from sqlalchemy.engine import Engine

BACKENDS = frozenset({"mysql", "mariadb"})
# An execution option set on a run's own connection only (MariaDB): (seconds, rows) for its statement.
LIMITS = "gateway_statement_limits"
KILL_GRACE = 1.0  # seconds past the limit before the client kills a statement the server did not stop
KILL_EVERY = 1.0  # a KILL that landed between two statements is sent again while the run goes on
_TIMEOUT_CODES = frozenset({1969, 3024})  # MariaDB ER_STATEMENT_TIMEOUT, MySQL ER_QUERY_TIMEOUT
_MYSQL_EXECUTION_TIME = (5, 7, 8)  # the first MySQL with max_execution_time
_ACCOUNT = re.compile(r" (?:to|for) user '[^']*'@'[^']*'")
# TIME is a duration (-838:59:59 to 838:59:59): kept as the server writes it rather than a timedelta.
_CONVERSIONS = {**pymysql.converters.conversions, FIELD_TYPE.TIME: str}


def create_engine(url: sa.URL) -> Engine:
    """An engine on PyMySQL whose connections open read-only and whose run statements carry their limits."""
    url = url.set(drivername=f"{url.get_backend_name()}+pymysql")
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 5, "init_command": "SET SESSION TRANSACTION READ ONLY", "conv": _CONVERSIONS},
    )
    sa.event.listen(engine, "before_cursor_execute", _limit_statement, retval=True)
    return engine


def _limit_statement(
    connection: sa.Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, _executemany: bool
) -> tuple[str, Any]:
    """Prefix a run's statement with MariaDB's per-statement limits (numbers we format, never a value)."""
    limits = connection.get_execution_options().get(LIMITS)
    if limits is None:
        return statement, parameters
    seconds, rows = limits
    prefix = f"SET STATEMENT max_statement_time={max(float(seconds), 0.001):.3f}, sql_select_limit={int(rows)} FOR "
    return prefix + statement, parameters


def error_text(exc: sa.exc.DBAPIError) -> str:
    """The server's message and error number, without the account and client host it names."""
    orig = exc.orig
    if isinstance(orig, pymysql.Error) and len(orig.args) >= 2:
        message = str(orig.args[1]).strip().splitlines()[0] if str(orig.args[1]).strip() else "error"
        return f"{_ACCOUNT.sub('', message)} (error {orig.args[0]})"
    return str(orig).strip().splitlines()[0] if orig is not None and str(orig).strip() else "error"


class Guard:
    """One run's statement on ``connection``: read-only, limited, killed on cancel or past its limit.

    Used as ``with guard:`` around the statement; ``reason_for`` then tells a
    failure that is a time-out or a cancel from any other.
    """

    def __init__(self, connection: sa.Connection, timeout: float, rows: int, cancel: threading.Event):
        self._connection = connection
        self._timeout = timeout
        self._rows = rows  # the most rows the statement needs to send
        self._cancel = cancel
        self._finished = threading.Event()
        self.killed: str | None = None  # "cancelled" or "timed_out" once a KILL QUERY was decided

    def __enter__(self) -> Guard:
        connection, dialect = self._connection, self._connection.dialect
        is_mariadb = isinstance(dialect, MySQLDialect) and dialect.is_mariadb
        version = dialect.server_version_info or ()
        if not is_mariadb:
            connection.exec_driver_sql("SET SESSION sql_select_limit = %s", (self._rows,))
            if version >= _MYSQL_EXECUTION_TIME:
                milliseconds = max(1, math.ceil(self._timeout * 1000))
                connection.exec_driver_sql("SET SESSION max_execution_time = %s", (milliseconds,))
        connection.exec_driver_sql("START TRANSACTION READ ONLY")
        if is_mariadb:
            connection.execution_options(**{LIMITS: (self._timeout, self._rows)})
        thread_id = int(connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())
        watcher = threading.Thread(target=self._watch, args=(connection.engine, thread_id), daemon=True)
        watcher.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        self._finished.set()

    def reason_for(self, exc: sa.exc.DBAPIError) -> str | None:
        """``"cancelled"`` or ``"timed_out"`` when that is why the statement failed, else None."""
        if self.killed is not None:
            return self.killed
        code = exc.orig.args[0] if isinstance(exc.orig, pymysql.Error) and exc.orig.args else None
        return "timed_out" if code in _TIMEOUT_CODES else None

    def _watch(self, engine: Engine, thread_id: int) -> None:
        backstop = time.monotonic() + self._timeout + KILL_GRACE
        next_kill = 0.0
        while not self._finished.wait(0.1):
            if self.killed is None:
                if self._cancel.is_set():
                    self.killed = "cancelled"
                elif time.monotonic() > backstop:
                    self.killed = "timed_out"
                else:
                    continue
            if time.monotonic() >= next_kill:
                _kill_query(engine, thread_id)
                next_kill = time.monotonic() + KILL_EVERY


def _kill_query(engine: Engine, thread_id: int) -> None:
    """``KILL QUERY`` from a second connection of the same account (which may kill its own statements)."""
    try:
        killer = engine.raw_connection()
    except sa.exc.DBAPIError:
        return  # unreachable now: the watcher tries again
    try:
        cursor = killer.cursor()
        cursor.execute("KILL QUERY %s", (thread_id,))
        cursor.close()
    except pymysql.Error:
        pass  # the statement (or its connection) has already ended
    finally:
        killer.close()
