"""Parameters from data, through a running gateway: lists read from query commands by ``system:choices``.

A real app on each engine, a real SQLite data source the test edits behind the
gateway's back, real runs.  What is checked is what a user and an auditor see:
the options in the command's schema and on the choices route, a run accepted
or refused (400 naming the field, one ``run.rejected``, nothing executed), the
source runs in the ledger (``system:choices``, ``detail.for_command``; a list
read from the cache writes nothing), a list whose cache expired read again,
a failing source making the command unavailable (never "accept anything").
"""

from __future__ import annotations

import sqlite3
import textwrap
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import func, select

from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from gateway.runners import query_engines
from gateway.runners.query import run_query
from tests.conftest import csrf_token_from, seed_session

# The lists live in the runs table's result cache: what depends on it (cache hits, expiry, single flight,
# the binding of items) runs on each engine; the surfaces' answers on the embedded one.
both_engines = pytest.mark.both_engines

CATALOGUE = """
datasources:
  ops: {url_env: CHOICES_OPS_DB_URL}
commands:
  - {name: statuses, title: Statuses, kind: query, datasource: ops, cache_seconds: 60,
     sql: "SELECT DISTINCT status FROM tasks ORDER BY status"}
  - name: names-with-status
    title: Names with a status
    kind: query
    datasource: ops
    sql: "SELECT name FROM tasks WHERE status = :status ORDER BY name"
    params:
      status: {type: string, required: true, max_length: 32}
    cache_seconds: 60
  - name: pick
    title: Pick tasks
    kind: shell
    argv: ["echo", "{status}", "{names}"]
    params:
      status: {type: choice, required: true, choices_from: {command: statuses, column: status}}
      names: {type: choice, multiple: true, required: true, depends_on: status,
              choices_from: {command: names-with-status, column: name}}
  - name: report
    title: Tasks in statuses
    kind: query
    datasource: ops
    sql: "SELECT name, status FROM tasks WHERE status IN :statuses ORDER BY name"
    params:
      statuses: {type: choice, multiple: true, required: true, choices_from: {command: statuses, column: status}}
  - name: args-pick
    title: Shell2HTTP with offered args
    kind: shell
    argv: ["echo", "{args}"]
    params:
      args: {type: choice, multiple: true, choices_from: {command: statuses, column: status}}
  - {name: broken-source, title: Broken, kind: query, datasource: ops, cache_seconds: 10,
     sql: "SELECT status FROM no_such_table"}
  - name: uses-broken
    title: Uses the broken source
    kind: shell
    argv: ["echo", "{status}"]
    params:
      status: {type: choice, choices_from: {command: broken-source, column: status}}
  - name: wrong-column
    title: Names a column the source lacks
    kind: shell
    argv: ["echo", "{status}"]
    params:
      status: {type: choice, choices_from: {command: statuses, column: state}}
  - {name: empty-source, title: Empty, kind: query, datasource: ops, cache_seconds: 10,
     sql: "SELECT status FROM tasks WHERE status = 'none'"}
  - name: uses-empty
    title: Uses the empty source
    kind: shell
    argv: ["echo", "{status}"]
    params:
      status: {type: choice, choices_from: {command: empty-source, column: status}}
"""
GRANTED = ("pick", "report", "args-pick", "uses-broken", "wrong-column", "uses-empty")
TASKS = [("alpha", "Success"), ("beta", "Failed"), ("gamma", "Failed"), ("delta", "Pending")]


def sqlite_source(path: Path, table: str, rows: list[tuple[Any, ...]]) -> str:
    """A SQLite data source file holding ``table`` (a CREATE TABLE's column list) and ``rows``; its URL."""
    name = table.split(" ", 1)[0]
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE {table}")
        connection.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    connection.close()
    return f"sqlite:///{path}"


def app_on(make_app, tmp_path: Path, catalogue: str, granted: tuple[str, ...]) -> Flask:
    """An app on ``catalogue`` (its data sources' variables set already), staff granted ``granted`` via group ops."""
    path = tmp_path / "commands.yaml"
    path.write_text(textwrap.dedent(catalogue))
    app = make_app(GATEWAY_COMMANDS_FILE=path, RUN_HEARTBEAT_SECONDS=1)
    with app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        for command in granted:
            groups.add_grant("ops", command)
    return app


@pytest.fixture
def world(make_app, users, tmp_path: Path, monkeypatch) -> SimpleNamespace:
    """The app, the ops database (writable here, read-only to the gateway), a staff token and helpers."""
    ops = tmp_path / "ops.db"
    monkeypatch.setenv("CHOICES_OPS_DB_URL", sqlite_source(ops, "tasks (name TEXT PRIMARY KEY, status TEXT)", TASKS))
    app = app_on(make_app, tmp_path, CATALOGUE, GRANTED)
    with app.app_context():
        secret = tokens.create_token(accounts.get_user("staff"), name="choices").secret
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}

    def start(name: str, params: dict[str, Any], wait: int = 20):
        return client.post(f"/api/v1/commands/{name}/runs", json={"params": params, "wait": wait}, headers=headers)

    def get(url: str):
        return client.get(url, headers=headers)

    return SimpleNamespace(app=app, ops=ops, client=client, headers=headers, start=start, get=get)


def events(app, **where: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.seq)
        for column, value in where.items():
            query = query.where(getattr(AuditEvent, column) == value)
        return list(db.session.scalars(query))


def run_count(app, command: str) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Run).where(Run.command == command)) or 0


def ops_write(world: SimpleNamespace, sql: str) -> None:
    with sqlite3.connect(world.ops) as connection:
        connection.execute(sql)
    connection.close()


def age_the_lists(app, seconds: float) -> None:
    """The lists' cache expires: their source runs finished ``seconds`` earlier than they did."""
    with app.app_context():
        for run in db.session.scalars(select(Run).where(Run.username == "system:choices")):
            run.finished_at = run.finished_at - timedelta(seconds=seconds)
        db.session.commit()


def refused(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code, error
    return error


# --- the schema and the source runs ----------------------------------------------------------------


@both_engines
def test_options_are_in_the_schema_and_read_by_system_choices_once(world):
    schema = world.get("/api/v1/commands/pick").get_json()
    status, names = schema["params"]["status"], schema["params"]["names"]
    assert schema["available"] is True
    assert status["choices"] == ["Failed", "Pending", "Success"]
    assert names["choices"] is None and names["depends_on"] == "status" and names["multiple"] is True
    assert names["choices_url"] == "http://localhost/api/v1/commands/pick/choices/names"

    [started] = events(world.app, event="run.started", command="statuses")
    assert (started.actor_id, started.actor_name, started.source_ip) == (None, "system:choices", None)
    assert started.detail["for_command"] == "pick"
    with world.app.app_context():
        source_run = db.session.get(Run, started.run_id)
        assert (source_run.user_id, source_run.username, source_run.status) == (None, "system:choices", "succeeded")

    # Read again from the cache: nothing written at all, and the list is the same.
    before = events(world.app)[-1].seq
    assert world.get("/api/v1/commands/pick").get_json()["params"]["status"]["choices"] == [
        "Failed",
        "Pending",
        "Success",
    ]
    assert [e.event for e in events(world.app) if e.seq > before] == []
    # The list of commands reads no list: its choices are null, their route is given.
    listed = {item["name"]: item for item in world.get("/api/v1/commands").get_json()["items"]}
    assert listed["pick"]["params"]["status"]["choices"] is None
    assert listed["args-pick"]["shell2http"] is True


@both_engines
def test_a_run_is_checked_against_the_lists_and_the_pair(world):
    done = world.start("pick", {"status": "Failed", "names": ["beta", "gamma"]}).get_json()
    assert done["status"] == "succeeded" and done["output"] == "Failed beta gamma\n", done
    assert done["params"] == {"status": "Failed", "names": ["beta", "gamma"]}
    [names_run] = events(world.app, event="run.started", command="names-with-status")
    assert names_run.params == {"status": "Failed"} and names_run.detail["for_command"] == "pick"

    # The pair changed between form and submit: beta is not a Success task.
    before = events(world.app)[-1].seq
    error = refused(world.start("pick", {"status": "Success", "names": ["alpha", "beta"]}), 400, "validation_error")
    assert error["details"] == {"names[1]": "is not one of the choices offered for this status"}
    written = [e for e in events(world.app) if e.seq > before and e.command == "pick"]
    assert [e.event for e in written] == ["run.rejected"]
    assert written[0].detail["fields"] == {"names[1]": "is not one of the choices offered for this status"}
    assert written[0].params == {"status": "Success", "names": ["alpha", "beta"]}
    assert run_count(world.app, "pick") == 1  # nothing executed

    error = refused(world.start("pick", {"status": "Unknown", "names": ["beta"]}), 400, "validation_error")
    assert error["details"] == {"status": "is not one of the choices offered"}  # the pair is not even looked at
    assert run_count(world.app, "names-with-status") == 2  # Failed, then Success; never "Unknown"


@both_engines
def test_a_value_stays_valid_while_its_list_is_cached_then_is_refused(world):
    """README: a value removed from the source is refused once the source's cache has expired."""
    assert world.start("pick", {"status": "Pending", "names": ["delta"]}).get_json()["status"] == "succeeded"
    ops_write(world, "DELETE FROM tasks WHERE name = 'delta'")  # Pending and delta are gone from the source
    again = world.start("pick", {"status": "Pending", "names": ["delta"]}).get_json()
    assert again["status"] == "succeeded"  # the cached lists (60 s) still offer them
    assert run_count(world.app, "statuses") == 1

    age_the_lists(world.app, 61)
    error = refused(world.start("pick", {"status": "Pending", "names": ["delta"]}), 400, "validation_error")
    assert error["details"] == {"status": "is not one of the choices offered"}
    assert run_count(world.app, "statuses") == 2 and run_count(world.app, "pick") == 2
    assert world.get("/api/v1/commands/pick").get_json()["params"]["status"]["choices"] == ["Failed", "Success"]


# --- sources that cannot give a list ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reason", "german"),
    [
        ("uses-broken", "the choices of 'status': source 'broken-source' ended failed (query failed: no such table: no_such_table)",
         "die Auswahl von 'status': Quelle 'broken-source' ist beendet (fehlgeschlagen: Abfrage fehlgeschlagen: no such table: no_such_table)"),
        ("wrong-column", "the choices of 'status': source 'statuses' has no column 'state' (its columns: status)",
         "die Auswahl von 'status': Quelle 'statuses' hat keine Spalte 'state' (ihre Spalten: status)"),
        ("uses-empty", "the choices of 'status': source 'empty-source' returned no values",
         "die Auswahl von 'status': Quelle 'empty-source' hat keine Werte geliefert"),
    ],
)  # fmt: skip
def test_a_source_without_a_list_makes_the_command_unavailable(world, command, reason, german):
    schema = world.get(f"/api/v1/commands/{command}").get_json()
    assert schema["available"] is False and schema["unavailable_reason"] == reason
    error = refused(world.start(command, {"status": "Failed"}), 503, "unavailable")
    assert error["message"] == f"This command is unavailable: {reason}."
    assert [(e.event, e.outcome) for e in events(world.app, command=command) if e.event.startswith("run.")] == [
        ("run.rejected", "unavailable")
    ]
    assert run_count(world.app, command) == 0
    assert run_count(world.app, "broken-source") <= 1  # a failed source is not run again at once

    seed_session(world.app, web := world.app.test_client(), _user_id(world.app, "staff"))
    page = web.get(f"/commands/{command}").get_data(as_text=True)
    assert f"This command is unavailable: {reason}." in page.replace("&#39;", "'")
    assert "<fieldset disabled>" in page
    # A German page says the same in German; the source's own words (SQLite's) stay as they are.
    page = web.get(f"/commands/{command}", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert f"Dieser Befehl ist nicht verfügbar: {german}." in page.replace("&#39;", "'")


def test_a_switched_off_source_makes_the_command_unavailable_even_with_a_cached_list(world):
    assert world.get("/api/v1/commands/report").get_json()["available"] is True  # the list is cached now
    with world.app.app_context():
        from gateway.catalogue import switches

        switches.set_disabled("statuses", True, actor={"id": None, "name": "cli:test"})
    error = refused(world.start("report", {"statuses": ["Failed"]}), 503, "unavailable")
    assert "source 'statuses' is disabled by an administrator" in error["message"]
    assert run_count(world.app, "report") == 0


def _user_id(app, name: str) -> int:
    with app.app_context():
        return accounts.get_user(name).id


# --- every surface the same way ---------------------------------------------------------------------


def test_every_surface_refuses_a_value_not_offered_the_same_way(world):
    seed_session(world.app, web := world.app.test_client(), _user_id(world.app, "staff"))
    form = web.get("/commands/pick?status=Failed").get_data(as_text=True)
    assert '<option value="beta"' in form and '<option value="alpha"' not in form  # the list for Failed
    before = events(world.app)[-1].seq

    posted = web.post(
        "/commands/pick", data={"csrf_token": csrf_token_from(form), "status": "Success", "names": "beta"}
    )
    assert posted.status_code == 400
    page = posted.get_data(as_text=True)
    assert "Names choice 1: is not one of the choices offered for this status." in page
    assert '<option value="alpha"' in page and '<option value="beta"' not in page  # re-rendered for Success

    refused(world.start("pick", {"status": "Success", "names": ["beta"]}), 400, "validation_error")
    s2h = world.client.post("/shell2http/args-pick", json={"args": ["Failed", "Nope"]}, headers=world.headers)
    assert s2h.status_code == 400
    assert s2h.get_json()["error"] == "Some parameters are not valid. args[1]: is not one of the choices offered"
    refused(world.start("args-pick", {"args": ["Nope"]}), 400, "validation_error")

    rejected = [e for e in events(world.app) if e.seq > before and e.command in ("pick", "args-pick")]
    assert [(e.event, e.command, sorted(e.detail["fields"])) for e in rejected] == [
        ("run.rejected", "pick", ["names[0]"]),
        ("run.rejected", "pick", ["names[0]"]),
        ("run.rejected", "args-pick", ["args[1]"]),
        ("run.rejected", "args-pick", ["args[0]"]),
    ]
    assert run_count(world.app, "pick") == run_count(world.app, "args-pick") == 0

    accepted = world.client.post("/shell2http/args-pick", json={"args": ["Failed", "Success"]}, headers=world.headers)
    assert accepted.status_code == 202, accepted.get_json()


def test_a_multiple_choice_through_the_form_without_javascript(world):
    seed_session(world.app, web := world.app.test_client(), _user_id(world.app, "staff"))
    form = web.get("/commands/report").get_data(as_text=True)
    for status in ("Failed", "Pending", "Success"):  # a short list: checkboxes, one per option
        assert f'<input type="checkbox" name="statuses" value="{status}" >' in form
    posted = web.post("/commands/report", data={"csrf_token": csrf_token_from(form), "statuses": ["Failed", "Success"]})
    assert posted.status_code == 303, posted.get_data(as_text=True)
    page = web.get(posted.headers["Location"]).get_data(as_text=True)
    assert "<dt>statuses</dt><dd>Failed, Success</dd>" in page  # the chosen values, in the run's parameters
    again = '<input type="hidden" name="statuses" value="Failed"><input type="hidden" name="statuses" value="Success">'
    assert again in page  # "Run again" carries each item ...
    prefilled = web.get("/commands/report?statuses=Failed&statuses=Success").get_data(as_text=True)
    assert 'value="Failed" checked>' in prefilled and 'value="Success" checked>' in prefilled  # ... and ticks them
    assert 'value="Pending" >' in prefilled


def test_a_multi_value_sql_item_is_refused_and_never_reaches_the_statement(world):
    injection = "Failed') OR 1=1 --"
    error = refused(world.start("report", {"statuses": ["Failed", injection]}), 400, "validation_error")
    assert error["details"] == {"statuses[1]": "is not one of the choices offered"}
    assert run_count(world.app, "report") == 0
    done = world.start("report", {"statuses": ["Failed", "Success"]}).get_json()
    assert done["result"]["rows"] == [["alpha", "Success"], ["beta", "Failed"], ["gamma", "Failed"]]


# --- the choices route ------------------------------------------------------------------------------


def test_the_choices_route_validates_what_the_list_depends_on(world):
    base = "/api/v1/commands/pick/choices"
    assert world.get(f"{base}/names?status=Failed").get_json() == {
        "param": "names", "choices": ["beta", "gamma"], "truncated": False,
    }  # fmt: skip
    assert world.get(f"{base}/status").get_json()["choices"] == ["Failed", "Pending", "Success"]
    for query, details in [
        ("", {"status": "is required"}),
        ("?status=Nope", {"status": "is not one of the choices offered"}),
        ("?status=Failed&evil=1", {"evil": "is not a parameter these choices depend on"}),
        ("?status=Failed&status=Success", {"status": "is given more than once"}),
    ]:
        assert refused(world.get(f"{base}/names{query}"), 400, "validation_error")["details"] == details, query
    refused(world.get(f"{base}/nope"), 404, "not_found")
    refused(world.get("/api/v1/commands/statuses/choices/x"), 404, "not_found")  # the source is not granted
    refused(world.get("/api/v1/commands/uses-broken/choices/status"), 503, "unavailable")
    assert run_count(world.app, "names-with-status") == 1  # only the valid status ran its source


@both_engines
def test_concurrent_requests_for_one_list_run_its_source_once(world):
    answers: list[Any] = []

    def ask() -> None:
        client = world.app.test_client()
        response = client.get("/api/v1/commands/pick/choices/names?status=Failed", headers=world.headers)
        answers.append(response.get_json())

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [answer["choices"] for answer in answers] == [["beta", "gamma"]] * 6
    assert run_count(world.app, "names-with-status") == 1
    assert len(events(world.app, event="run.started", command="names-with-status")) == 1


# --- the runner: each item its own bound parameter --------------------------------------------------


def captured(url: str, sql: str, params: dict[str, Any]) -> tuple[list[list[Any]], list[tuple[str, Any]]]:
    """The rows, and every (statement, parameters) the driver was given."""
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    engine = query_engines.engine_for(url)
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        rows = run_query(url, sql, params, row_limit=100, statement_timeout=5).rows
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return rows, seen


ITEMS = ["Failed", "x') OR 1=1 --", "'; DROP TABLE tasks; --"]
# The tasks as a VALUES list, which both engines name column1, column2: no table to create or drop.
TASKS_SQL = "SELECT column1 FROM (VALUES {}) AS tasks WHERE column2 IN :statuses ORDER BY column1".format(
    ", ".join(f"('{name}', '{status}')" for name, status in TASKS)
)


@pytest.fixture
def data_source(backend: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    """A data source on this test's engine: an empty SQLite file, or this test's PostgreSQL database."""
    if backend == "sqlite":
        sqlite3.connect(tmp_path / "empty.db").close()
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    yield database_url
    engine = query_engines._engines.pop(database_url, None)
    if engine is not None:
        engine.dispose()  # the database goes back to the pool: no connection may stay open on it


@both_engines
def test_each_item_is_bound_on_its_own_and_the_statement_never_holds_a_value(data_source):
    rows, seen = captured(data_source, TASKS_SQL, {"statuses": ITEMS})
    assert rows == [["beta"], ["gamma"]]  # the hostile items matched nothing
    statement, parameters = seen[-1]
    head, tail = statement.split(" IN ", 1)
    assert head == TASKS_SQL.split(" IN ", 1)[0]  # the statement as written, then placeholders, never a value
    assert tail.endswith(") ORDER BY column1") and all(mark not in tail for mark in ("'", "1=1", "DROP"))
    bound = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
    assert bound == ITEMS  # three parameters, one per item
    assert captured(data_source, TASKS_SQL, {"statuses": ["Success", "Pending"]})[0] == [["alpha"], ["delta"]]
