"""MySQL / MariaDB data sources against a real MariaDB server: read-only, bound, limited, timed, killed.

A database and a read-only account (``GRANT SELECT``, as README tells operators)
are created for this module and dropped after it.  The runner is tested directly,
then through the gateway (the API starts, waits for and cancels runs).  MySQL
itself is not tested here (Debian ships MariaDB).
"""

from __future__ import annotations

import secrets
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.identity import accounts, tokens
from gateway.runners import query_engines
from tests import conftest
from tests.test_query_runner import TASKS, refused, run

pytestmark = [
    pytest.mark.mariadb,
    pytest.mark.skipif(
        not conftest.MARIADB_AVAILABLE and not conftest.REQUIRE_MARIADB, reason="MariaDB is not reachable"
    ),
]

TASKS_BY_STATUS = "SELECT task_status, COUNT(*) AS n FROM tasks WHERE task_status = :status GROUP BY task_status"


@dataclass(frozen=True)
class Source:
    database: str
    account: str
    reader_url: str  # the read-only account (GRANT SELECT)
    owner_url: str  # the administrator, who could write: only the read-only transaction stops it


@pytest.fixture(scope="module")
def mariadb() -> Iterator[Source]:
    suffix = secrets.token_hex(4)
    database, account, password = f"gw_test_{suffix}", f"gw_ro_{suffix}", secrets.token_hex(12)
    admin = conftest.mariadb_admin()
    with admin.cursor() as cursor:
        # Identifiers cannot be bound; these are the test's own hex names.
        cursor.execute(f"CREATE DATABASE `{database}`")
        cursor.execute(
            f"CREATE TABLE `{database}`.tasks (id INT PRIMARY KEY, name VARCHAR(50), task_status VARCHAR(20),"
            " cost DECIMAL(10, 2), due DATE, seen DATETIME(6), took TIME(3), digest VARBINARY(4), done BOOLEAN,"
            " ratio DOUBLE, doc JSON)"
        )
        cursor.executemany(f"INSERT INTO `{database}`.tasks (id, name, task_status) VALUES (%s, %s, %s)", TASKS)
        cursor.execute(
            f"UPDATE `{database}`.tasks SET cost = 12.50, due = '2024-02-29', seen = '2024-01-31 10:00:00.250000',"
            " took = '-26:03:04.500', digest = x'00ff10', done = TRUE, ratio = 0.25, doc = '{\"a\": [1, 2]}'"
            " WHERE id = 1"
        )
        cursor.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (account, password))
        cursor.execute(f"GRANT SELECT ON `{database}`.* TO %s@'127.0.0.1'", (account,))
    admin_url = sa.make_url(conftest.MARIADB_ADMIN_URL).set(database=database)
    reader_url = admin_url.set(username=account, password=password)
    source = Source(
        database=database,
        account=account,
        reader_url=reader_url.render_as_string(hide_password=False),
        owner_url=admin_url.render_as_string(hide_password=False),
    )
    yield source
    for url in (source.reader_url, source.owner_url):
        engine = query_engines._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
    with admin.cursor() as cursor:
        cursor.execute("DROP USER IF EXISTS %s@'127.0.0.1'", (account,))
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()


def task_rows(source: Source) -> list[tuple]:
    admin = conftest.mariadb_admin()
    with admin.cursor() as cursor:
        cursor.execute(f"SELECT id, name, task_status FROM `{source.database}`.tasks ORDER BY id")
        rows = [tuple(row) for row in cursor.fetchall()]
    admin.close()
    return rows


def statements_past_their_limit() -> int:
    """The server's count of statements it stopped at their ``max_statement_time`` (it only grows)."""
    admin = conftest.mariadb_admin()
    with admin.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Max_statement_time_exceeded'")
        count = int(cursor.fetchone()[1])
    admin.close()
    return count


def running_sleeps(account: str) -> int:
    """Statements of ``account`` still running SLEEP on the server (seen by the administrator)."""
    admin = conftest.mariadb_admin()
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s AND INFO LIKE %s",
            (account, "%SLEEP(%"),
        )
        count = int(cursor.fetchone()[0])
    admin.close()
    return count


def no_sleep_left(account: str) -> bool:
    deadline = time.monotonic() + 1
    while running_sleeps(account) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running_sleeps(account) == 0


# --- the runner ---------------------------------------------------------------------------------


def test_tasks_by_status_with_the_status_bound(mariadb: Source) -> None:
    assert query_engines.url_problem(mariadb.reader_url) is None  # the URL the catalogue's check passed runs
    result = run(mariadb.reader_url, TASKS_BY_STATUS, {"status": "Success"})
    assert result.as_dict() == {"columns": ["task_status", "n"], "rows": [["Success", 2]], "truncated": False}
    by_name = "SELECT id FROM tasks WHERE name = :name"
    assert run(mariadb.reader_url, by_name, {"name": "nothing' OR '1'='1"}).rows == []
    assert run(mariadb.reader_url, by_name, {"name": "x' OR '1'='1"}).rows == [[5]]  # the literal matches itself
    assert run(mariadb.reader_url, "SELECT 7 % 4 AS m, '%s' AS s").rows == [[3, "%s"]]  # no driver formatting


def test_a_multiple_choice_binds_each_item_on_its_own(mariadb: Source) -> None:
    """``IN :statuses`` with a list: one placeholder per item on MariaDB too, a hostile item matching nothing."""
    sql = "SELECT task_status, COUNT(*) AS n FROM tasks WHERE task_status IN :statuses GROUP BY task_status"
    hostile = ["Success", "x') OR 1=1 -- ", "'; DROP TABLE tasks; --"]
    assert run(mariadb.reader_url, sql + " ORDER BY task_status", {"statuses": hostile}).rows == [["Success", 2]]
    assert len(task_rows(mariadb)) == len(TASKS)


def test_json_values(mariadb: Source) -> None:
    result = run(mariadb.reader_url, "SELECT cost, due, seen, took, digest, done, ratio, doc FROM tasks ORDER BY id")
    assert result.rows[0] == [
        "12.50", "2024-02-29", "2024-01-31T10:00:00.250000", "-26:03:04.500", "00ff10", 1, 0.25, '{"a": [1, 2]}'
    ]  # fmt: skip
    assert result.rows[1] == [None] * 8


@pytest.mark.parametrize(
    ("who", "sql", "refusal"),
    [
        ("owner_url", "INSERT INTO tasks (id, name) VALUES (9, 'evil')", "READ ONLY transaction (error 1792)"),
        ("owner_url", "UPDATE tasks SET task_status = 'Failed'", "READ ONLY transaction (error 1792)"),
        ("owner_url", "DELETE FROM tasks", "READ ONLY transaction (error 1792)"),
        # DDL commits implicitly: the session itself is read-only, so the next transaction is too
        ("owner_url", "DROP TABLE tasks", "READ ONLY transaction (error 1792)"),
        ("owner_url", "CREATE TABLE evil (x INT)", "READ ONLY transaction (error 1792)"),
        ("reader_url", "DELETE FROM tasks", "DELETE command denied for table"),
        ("reader_url", "UPDATE tasks SET task_status = 'Failed'", "UPDATE command denied for table"),
    ],
)
def test_writes_are_refused(mariadb: Source, who: str, sql: str, refusal: str) -> None:
    error = refused(getattr(mariadb, who), sql)
    assert error.message.startswith("query failed: ") and refusal in error.message, error.message
    assert not error.timed_out and not error.cancelled
    assert mariadb.account not in error.message and "127.0.0.1" not in error.message  # no account, no host
    assert task_rows(mariadb) == TASKS


def test_a_statement_cannot_lift_read_only_for_the_next_run(mariadb: Source) -> None:
    """Every run has a fresh connection whose session starts read-only; one statement per run."""
    run(mariadb.owner_url, "SET SESSION TRANSACTION READ WRITE")
    assert "READ ONLY transaction" in refused(mariadb.owner_url, "DELETE FROM tasks").message
    assert "syntax" in refused(mariadb.owner_url, "SELECT 1; DELETE FROM tasks").message
    assert task_rows(mariadb) == TASKS


def test_row_limit_truncates_without_reading_the_rest(mariadb: Source) -> None:
    started = time.monotonic()
    result = run(mariadb.reader_url, "SELECT seq FROM seq_1_to_5000000", row_limit=3)
    assert result.rows == [[1], [2], [3]] and result.truncated is True
    # an explicit LIMIT overrides the server's select limit: the rest is streamed past, not kept
    explicit = run(mariadb.reader_url, "SELECT seq FROM seq_1_to_100000 LIMIT 100000", row_limit=2)
    assert explicit.rows == [[1], [2]] and explicit.truncated is True
    exact = run(mariadb.reader_url, "SELECT id FROM tasks ORDER BY id", row_limit=5)
    assert len(exact.rows) == 5 and exact.truncated is False
    assert time.monotonic() - started < 3


def test_a_slow_query_times_out_and_is_stopped_on_the_server(mariadb: Source) -> None:
    stopped_before = statements_past_their_limit()
    started = time.monotonic()
    error = refused(mariadb.reader_url, "SELECT SLEEP(5)", timeout=0.5)
    assert error.timed_out and not error.cancelled and error.message == "query timed out after 0.5 s"
    assert time.monotonic() - started < 4  # well before the query's own 5 s
    assert statements_past_their_limit() > stopped_before  # the server's own limit, not only the client's KILL
    assert no_sleep_left(mariadb.account)  # not merely abandoned by the client: the server stopped it


def test_cancel_kills_the_query_from_a_second_connection(mariadb: Source) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    error = refused(mariadb.reader_url, "SELECT SLEEP(5)", timeout=30, cancel=cancel)
    assert error.cancelled and not error.timed_out and error.message == "query cancelled"
    assert time.monotonic() - started < 4  # well before the query's own 5 s
    assert no_sleep_left(mariadb.account)


# --- through the gateway -----------------------------------------------------------------------

CATALOGUE = textwrap.dedent(
    f"""
    datasources:
      ops:
        url_env: TEST_MARIADB_OPS_URL
        row_limit: 2
        statement_timeout: 30
    commands:
      - name: task-status
        title: Tasks by status
        kind: query
        datasource: ops
        sql: "{TASKS_BY_STATUS}"
        params:
          status: {{type: choice, choices: [Success, Pending, Failed], required: true}}
      - name: all-tasks
        title: All tasks
        kind: query
        datasource: ops
        sql: "SELECT id, name FROM tasks ORDER BY id"
      - name: slow
        title: Sleeps on the server
        kind: query
        datasource: ops
        sql: "SELECT SLEEP(:seconds) AS slept"
        params:
          seconds: {{type: number, min: 0, max: 10, default: 5}}
      - name: slow-limited
        title: Sleeps past its time limit
        kind: query
        datasource: ops
        sql: "SELECT SLEEP(5) AS slept"
        timeout: 0.5
    """
)


@pytest.fixture
def gateway(make_app, mariadb: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An app whose ``ops`` data source is the MariaDB database, and an admin's bearer headers."""
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    monkeypatch.setenv("TEST_MARIADB_OPS_URL", mariadb.reader_url)
    app = make_app(GATEWAY_COMMANDS_FILE=path, RUN_HEARTBEAT_SECONDS=1)
    with app.app_context():
        admin = accounts.create_user("admin", "admin-password-123", is_admin=True)
        headers = {"Authorization": f"Bearer {tokens.create_token(admin).secret}"}
    return app.test_client(), headers


def test_the_report_the_row_limit_and_a_time_out_through_the_api(gateway, mariadb: Source) -> None:
    client, headers = gateway
    listed = client.get("/api/v1/commands", headers=headers).get_json()["items"]
    assert all(command["available"] for command in listed) and len(listed) == 4  # like any data source
    ready = client.get("/readyz").get_json(force=True)
    assert ready["checks"]["catalogue:loaded"][0]["status"] == "pass"

    report = client.post(
        "/api/v1/commands/task-status/runs", json={"params": {"status": "Pending"}, "wait": 20}, headers=headers
    ).get_json()
    assert report["status"] == "succeeded", report
    assert report["result"] == {"columns": ["task_status", "n"], "rows": [["Pending", 2]], "truncated": False}

    limited = client.post("/api/v1/commands/all-tasks/runs", json={"wait": 20}, headers=headers).get_json()
    assert limited["result"] == {"columns": ["id", "name"], "rows": [[1, "backup"], [2, "report"]], "truncated": True}

    slow = client.post("/api/v1/commands/slow-limited/runs", json={"wait": 20}, headers=headers).get_json()
    assert slow["status"] == "timed_out" and slow["error"] == "query timed out after 0.5 s", slow
    assert no_sleep_left(mariadb.account)


def test_cancel_through_the_api_kills_the_query(gateway, mariadb: Source) -> None:
    client, headers = gateway
    started = client.post("/api/v1/commands/slow/runs", json={"params": {"seconds": 10}}, headers=headers)
    run_id = started.get_json()["id"]
    deadline = time.monotonic() + 5
    while not running_sleeps(mariadb.account) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_sleeps(mariadb.account) == 1
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers).status_code == 202
    done = client.get(f"/api/v1/runs/{run_id}?wait=10", headers=headers).get_json()
    assert done["status"] == "cancelled"
    assert no_sleep_left(mariadb.account)
