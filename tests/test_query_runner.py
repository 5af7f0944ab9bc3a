"""The query runner against real SQLite files and a real PostgreSQL database: read-only, bound, limited, timed."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.runners import query_engines
from gateway.runners.query import QueryError, run_query
from tests import conftest

REQUIRE_POSTGRES = os.environ.get("GATEWAY_TEST_REQUIRE_POSTGRES") == "1"
HUGE_COUNT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c"
)

TASKS = [
    (1, "backup", "Success"),
    (2, "report", "Pending"),
    (3, "deploy", "Failed"),
    (4, "sync", "Success"),
    (5, "x' OR '1'='1", "Pending"),
]


def run(url: str, sql: str, params: dict | None = None, *, row_limit: int = 100, timeout: float = 5, **kw):
    return run_query(url, sql, params or {}, row_limit=row_limit, statement_timeout=timeout, **kw)


def refused(url: str, sql: str, params: dict | None = None, **kw) -> QueryError:
    with pytest.raises(QueryError) as caught:
        run(url, sql, params, **kw)
    return caught.value


# --- SQLite -------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    path = tmp_path / "ops.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT, task_status TEXT)")
        connection.executemany("INSERT INTO tasks VALUES (?, ?, ?)", TASKS)
    connection.close()
    return f"sqlite:///{path}"


def sqlite_rows(url: str) -> list[tuple]:
    with sqlite3.connect(sa.make_url(url).database) as connection:
        return connection.execute("SELECT * FROM tasks ORDER BY id").fetchall()


def test_sqlite_select(sqlite_url: str) -> None:
    result = run(
        sqlite_url,
        "SELECT task_status, COUNT(*) AS n FROM tasks WHERE task_status IN (:a, :b) "
        "GROUP BY task_status ORDER BY task_status",
        {"a": "Success", "b": "Failed"},
    )
    assert result.as_dict() == {
        "columns": ["task_status", "n"],
        "rows": [["Failed", 1], ["Success", 2]],
        "truncated": False,
    }


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO tasks VALUES (9, 'evil', 'Success')",
        "UPDATE tasks SET task_status = 'Failed'",
        "DELETE FROM tasks",
        "CREATE TABLE evil (x)",
        "DROP TABLE tasks",
        "CREATE TEMP TABLE scratch AS SELECT 1",
    ],
)
def test_sqlite_refuses_writes_in_the_engine(sqlite_url: str, sql: str) -> None:
    error = refused(sqlite_url, sql)
    assert "readonly" in error.message and not error.timed_out
    assert sqlite_rows(sqlite_url) == TASKS


def test_sqlite_refuses_attach_so_nothing_is_created_or_written(sqlite_url: str, tmp_path: Path) -> None:
    for target in (tmp_path / "other.db", f"file:{tmp_path / 'uri.db'}?mode=rwc"):
        error = refused(sqlite_url, f"ATTACH '{target}' AS other")
        assert "readonly" in error.message
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ops.db"]
    # each query is its own connection, so there is no attached database to write into afterwards
    assert "no such table" in refused(sqlite_url, "INSERT INTO other.t VALUES (1)").message


def test_sqlite_refuses_switching_query_only_off(sqlite_url: str) -> None:
    assert "readonly" in refused(sqlite_url, "PRAGMA query_only = OFF").message
    assert "readonly" in refused(sqlite_url, "PRAGMA writable_schema = ON").message
    assert run(sqlite_url, "PRAGMA query_only").rows == [[1]]  # reading a setting is fine
    assert [row[1] for row in run(sqlite_url, "PRAGMA table_info(tasks)").rows] == ["id", "name", "task_status"]


def test_sqlite_values_are_bound_never_interpolated(sqlite_url: str) -> None:
    sql = "SELECT id FROM tasks WHERE name = :name"
    assert run(sqlite_url, sql, {"name": "nothing' OR '1'='1"}).rows == []
    assert run(sqlite_url, sql, {"name": "x' OR '1'='1"}).rows == [[5]]  # the literal name matches itself only
    assert run(sqlite_url, sql, {"name": "backup'; DROP TABLE tasks; --"}).rows == []
    assert sqlite_rows(sqlite_url) == TASKS


def test_sqlite_only_one_statement_runs(sqlite_url: str) -> None:
    error = refused(sqlite_url, "SELECT 1; DELETE FROM tasks")
    assert "one statement" in error.message
    assert sqlite_rows(sqlite_url) == TASKS


def test_sqlite_row_limit_truncates(sqlite_url: str) -> None:
    result = run(sqlite_url, "SELECT id FROM tasks ORDER BY id", row_limit=3)
    assert result.rows == [[1], [2], [3]] and result.truncated is True
    exact = run(sqlite_url, "SELECT id FROM tasks ORDER BY id", row_limit=5)
    assert len(exact.rows) == 5 and exact.truncated is False


def test_sqlite_statement_timeout_interrupts(sqlite_url: str) -> None:
    started = time.monotonic()
    error = refused(sqlite_url, HUGE_COUNT, timeout=0.3)
    assert error.timed_out and not error.cancelled and "timed out" in error.message
    assert time.monotonic() - started < 5


def test_sqlite_cancel_interrupts(sqlite_url: str) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    error = refused(sqlite_url, HUGE_COUNT, timeout=60, cancel=cancel)
    assert error.cancelled and not error.timed_out and error.message == "query cancelled"
    assert time.monotonic() - started < 10


def test_sqlite_value_types(sqlite_url: str) -> None:
    result = run(sqlite_url, "SELECT 1, 2.5, 'text', NULL, x'00ff', 1 = 1")
    assert result.rows == [[1, 2.5, "text", None, "00ff", 1]]


def test_sqlite_missing_file_is_a_query_error(tmp_path: Path) -> None:
    error = refused(f"sqlite:///{tmp_path / 'missing.db'}", "SELECT 1")
    assert "cannot connect" in error.message and str(tmp_path) not in error.message
    assert not (tmp_path / "missing.db").exists()  # read-only: not created either


@pytest.mark.parametrize(("directory", "in_url"), [("odd#1 x", "odd#1 x"), ("q?mode=rwc", "q%3Fmode=rwc")])
def test_sqlite_path_with_uri_characters(tmp_path: Path, directory: str, in_url: str) -> None:
    """The file path is quoted into SQLite's URI: '#' or '?' in it cannot cut the path or drop mode=ro."""
    (tmp_path / directory).mkdir()
    with sqlite3.connect(tmp_path / directory / "ops.db") as connection:
        connection.execute("CREATE TABLE t (x)")
        connection.execute("INSERT INTO t VALUES (42)")
    connection.close()
    url = f"sqlite:///{tmp_path / in_url / 'ops.db'}"
    assert run(url, "SELECT x FROM t").rows == [[42]]
    assert "readonly" in refused(url, "INSERT INTO t VALUES (1)").message
    assert sorted(path.name for path in (tmp_path / directory).iterdir()) == ["ops.db"]


def test_sqlite_syntax_error_is_a_plain_query_error(sqlite_url: str) -> None:
    error = refused(sqlite_url, "SELEC 1")
    assert error.message.startswith("query failed:") and "syntax error" in error.message
    assert not error.timed_out and not error.cancelled


# --- which dialect a URL goes to -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("postgresql://someone@127.0.0.1:9/ops", "postgresql+psycopg"),
        ("postgres://someone@127.0.0.1:9/ops", "postgresql+psycopg"),
        ("mysql://someone@127.0.0.1:9/ops", "mysql+pymysql"),
        ("mysql+mysqldb://someone@127.0.0.1:9/ops", "mysql+pymysql"),
        ("mariadb://someone@127.0.0.1:9/ops", "mariadb+pymysql"),
    ],
)
def test_each_backend_goes_to_its_own_dialect(url: str, dialect: str) -> None:
    engine = query_engines.engine_for(url)
    try:
        assert f"{engine.dialect.name}+{engine.dialect.driver}" == dialect
    finally:
        query_engines._engines.pop(url).dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("oracle://scott:hunter2@127.0.0.1:9/orcl", "data sources of type 'oracle' are not supported"),
        ("mssql+pyodbc://scott:hunter2@127.0.0.1:9/ops", "data sources of type 'mssql' are not supported"),
        ("hunter2 is not a URL", "the data source URL is not a database URL"),
        ("mongodb://scott:hunter2@127.0.0.1:9/ops", "data sources of type 'mongodb' are not supported"),
        ("mysql://scott:hunter2@127.0.0.1:port/ops", "the data source URL is not a database URL"),
        (
            "mysql+pymysql://scott:hunter2@127.0.0.1:9/ops?sslcert=x",
            "the driver does not take the URL option 'sslcert'",
        ),
        ("mariadb://scott:hunter2@h/ops?connect_timeout=soon", "the driver cannot read the data source URL"),
        ("postgresql://scott:hunter2@127.0.0.1:9/ops?ssl_ca=x", "the driver does not take the URL option 'ssl_ca'"),
        ("sqlite://", "the SQLite URL names no database file"),
        ("sqlite:///:memory:", "the SQLite URL names no database file"),
        # The password is in the scheme or names an option: the message shows neither.
        ("hunter2://scott:hunter2@h/ops", "data sources of type '***' are not supported"),
        ("postgresql://scott:hunter2@h/ops?hunter2=1", "the driver does not take the URL option '***'"),
    ],
)
def test_an_unusable_url_is_refused_by_name_at_run_and_before(url: str, message: str) -> None:
    """The run's refusal and ``url_problem`` (catalogue load, validate, readiness) are the same decision."""
    error = refused(url, "SELECT 1")
    assert error.message == f"query failed: {message}" + (
        " (sqlite, postgresql, mysql or mariadb)" if "type" in message else ""
    )
    assert error.message == f"query failed: {query_engines.url_problem(url)}"
    assert "hunter2" not in error.message and url not in query_engines._engines


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://scott:hunter2@127.0.0.1:9/ops?sslmode=require&connect_timeout=3",
        "postgres://scott@127.0.0.1:9/ops",
        "mysql+pymysql://scott:hunter2@127.0.0.1:9/ops?ssl_ca=/etc/ca.pem&charset=utf8mb4",
        "mysql+mysqldb://scott@127.0.0.1:9/ops",
        "mariadb://scott@127.0.0.1:9/ops",
        "sqlite:////srv/ops.db",
    ],
)
def test_a_usable_url_has_no_problem_and_nothing_connects_to_find_out(url: str) -> None:
    assert query_engines.url_problem(url) is None  # port 9 answers nothing: no connection was tried
    assert url not in query_engines._engines


def test_mysql_unreachable_is_a_query_error_without_credentials() -> None:
    url = "mysql+pymysql://someone:hunter2@127.0.0.1:9/nowhere"
    error = refused(url, "SELECT 1")
    assert error.message == "query failed: cannot connect to the data source"
    query_engines._engines.pop(url).dispose()


# --- PostgreSQL ---------------------------------------------------------------------------------


def postgres(test: Callable[..., None]) -> Callable[..., None]:
    """Runs against PostgreSQL; skipped when it is unreachable, unless CI requires it."""
    skip = pytest.mark.skipif(not conftest.PG_AVAILABLE and not REQUIRE_POSTGRES, reason="PostgreSQL is not reachable")
    return pytest.mark.postgres(skip(test))


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    name = conftest.create_pg_database()
    url = conftest.pg_url(name)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE tasks (id integer PRIMARY KEY, name text, task_status text, cost numeric(10, 2),"
            " done boolean, due date, seen timestamptz, ratio double precision)"
        )
        connection.exec_driver_sql(
            "INSERT INTO tasks VALUES"
            " (1, 'backup', 'Success', 12.50, true, '2024-01-31', '2024-01-31 10:00:00+00', 0.25),"
            " (2, 'report', 'Pending', NULL, false, NULL, NULL, NULL),"
            " (3, 'x'' OR ''1''=''1', 'Failed', 0.10, false, '2024-02-29', NULL, 1.5)"
        )
    engine.dispose()
    yield url
    engine = query_engines._engines.pop(url, None)
    if engine is not None:
        engine.dispose()
    conftest.drop_pg_database(name)


def pg_count(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM tasks").scalar_one()
    engine.dispose()
    return count


@postgres
def test_postgresql_select_and_json_values(pg_database: str) -> None:
    assert query_engines.url_problem(pg_database) is None  # the URL the catalogue's check passed is the one that runs
    result = run(pg_database, "SELECT id, name, cost, done, due, seen, ratio FROM tasks ORDER BY id")
    assert result.columns == ["id", "name", "cost", "done", "due", "seen", "ratio"]
    assert result.rows == [
        [1, "backup", "12.50", "true", "2024-01-31", "2024-01-31T10:00:00+00:00", 0.25],
        [2, "report", None, "false", None, None, None],
        [3, "x' OR '1'='1", "0.10", "false", "2024-02-29", None, 1.5],
    ]


@postgres
@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO tasks (id, name) VALUES (9, 'evil')",
        "UPDATE tasks SET task_status = 'Failed'",
        "DELETE FROM tasks",
        "CREATE TABLE evil (x int)",
    ],
)
def test_postgresql_read_only_transaction_refuses_writes(pg_database: str, sql: str) -> None:
    assert "read-only transaction" in refused(pg_database, sql).message
    assert pg_count(pg_database) == 3


@postgres
def test_postgresql_session_settings_cannot_lift_read_only(pg_database: str) -> None:
    run(pg_database, "SELECT set_config('default_transaction_read_only', 'off', false)")
    run(pg_database, "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
    assert "read-only transaction" in refused(pg_database, "DELETE FROM tasks").message
    assert pg_count(pg_database) == 3


@postgres
def test_postgresql_data_modifying_cte_is_refused(pg_database: str) -> None:
    error = refused(pg_database, "WITH gone AS (DELETE FROM tasks RETURNING id) SELECT count(*) FROM gone")
    assert error.message.startswith("query failed:") and not error.timed_out
    assert pg_count(pg_database) == 3


@postgres
def test_postgresql_values_are_bound(pg_database: str) -> None:
    sql = "SELECT id FROM tasks WHERE name = :name"
    assert run(pg_database, sql, {"name": "nothing' OR '1'='1"}).rows == []
    assert run(pg_database, sql, {"name": "x' OR '1'='1"}).rows == [[3]]


@postgres
def test_postgresql_statement_timeout(pg_database: str) -> None:
    started = time.monotonic()
    error = refused(pg_database, "SELECT pg_sleep(5)", timeout=0.5)
    assert error.timed_out and not error.cancelled and error.message == "query timed out after 0.5 s"
    assert time.monotonic() - started < 4
    assert run(pg_database, "SELECT 1 AS one").rows == [[1]]  # the pooled connection is usable again


@postgres
def test_postgresql_cancel(pg_database: str) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    error = refused(pg_database, "SELECT pg_sleep(10)", timeout=30, cancel=cancel)
    assert error.cancelled and not error.timed_out
    assert time.monotonic() - started < 5


@postgres
def test_postgresql_row_limit_truncates(pg_database: str) -> None:
    result = run(pg_database, "SELECT id FROM tasks ORDER BY id", row_limit=2)
    assert result.rows == [[1], [2]] and result.truncated is True
    assert run(pg_database, "SELECT id FROM tasks", row_limit=3).truncated is False


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@postgres
def test_postgresql_row_limit_bounds_memory_for_a_huge_result(pg_database: str) -> None:
    """Only row_limit + 1 rows reach the gateway: two million wide rows would take ~200 MB otherwise."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _peak_rss_kib()
    for sql in (
        "SELECT g, repeat('x', 50) AS pad FROM generate_series(1, 2000000) g",
        "WITH s AS (SELECT g FROM generate_series(1, 2000000) g) SELECT g, repeat('x', 50) AS pad FROM s",
    ):
        result = run(pg_database, sql, row_limit=3, timeout=30)
        assert [row[0] for row in result.rows] == [1, 2, 3] and result.truncated
    growth_mib = (_peak_rss_kib() - before) / 1024
    assert growth_mib < 40, f"peak RSS grew by {growth_mib:.0f} MiB"


@postgres
def test_postgresql_unreachable_is_a_query_error_without_credentials() -> None:
    url = "postgresql+psycopg://someone:hunter2@127.0.0.1:9/nowhere"
    error = refused(url, "SELECT 1")
    assert "cannot connect" in error.message and "hunter2" not in error.message
    query_engines._engines.pop(url).dispose()
