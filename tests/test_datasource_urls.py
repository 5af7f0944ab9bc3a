"""A data source URL the query runner cannot use: named at load, by ``commands validate`` and by ``/readyz``.

The URL lives in the environment, not in the reviewed file, so like an unset one it
does not refuse the catalogue: its commands are unavailable, saying why (the data
source and its variable, never the URL or its password); ``manage.py commands
validate`` exits 1 naming it; ``/readyz`` warns on its fixed check
``catalogue:datasources``.  Whether a URL is usable is the query runner's own
decision (``gateway.runners.query_engines.url_problem``), not a second list.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from config import PROJECT_ROOT
from gateway.catalogue import parse_catalogue
from gateway.db.models import Run
from gateway.identity import accounts, tokens
from gateway.platform.extensions import db
from gateway.runners.query_engines import url_problem
from tests import manage_process
from tests.conftest import base_environ

PASSWORD = "hunter2-Secret"
CATALOGUE = """
datasources:
  ops: {url_env: GW_TEST_OPS_URL}
  spare: {url_env: GW_TEST_SPARE_URL}
commands:
  - {name: report, title: Report, kind: query, datasource: ops, sql: "SELECT 1 AS one"}
  - {name: spare-report, title: Spare report, kind: query, datasource: spare, sql: "SELECT 2 AS two"}
  - {name: hello, title: Hello, kind: shell, argv: ["echo", "hello"]}
"""
UNUSABLE = [
    f"oracle://scott:{PASSWORD}@db.internal:1521/orcl",
    f"mongodb://scott:{PASSWORD}@db.internal/ops",
    f"mysql+pymysql://scott:{PASSWORD}@db.internal:notaport/ops",
    f"mysql+pymysql://scott:{PASSWORD}@db.internal/ops?sslrootcert=/ca.pem",
    f"{PASSWORD}://scott:{PASSWORD}@db.internal/ops",
]


def sqlite_file(path: Path) -> str:
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


def no_secret(text: str) -> None:
    assert PASSWORD not in text and "db.internal" not in text


# --- the catalogue -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", UNUSABLE)
def test_an_unusable_url_makes_its_commands_unavailable_naming_source_and_variable(url: str, tmp_path: Path) -> None:
    environ = {"GW_TEST_OPS_URL": url, "GW_TEST_SPARE_URL": sqlite_file(tmp_path / "spare.db")}
    catalogue = parse_catalogue(CATALOGUE, environ, url_check=url_problem)
    assert catalogue.unavailable() == ["report"]  # the other source and the shell command are untouched
    assert "ops" not in catalogue.datasource_urls and "spare" in catalogue.datasource_urls
    reason = catalogue.unavailable_reason(catalogue.commands["report"]) or ""
    assert reason.startswith("data source 'ops' cannot be used (GW_TEST_OPS_URL: ")
    assert reason.endswith(f"{url_problem(url)})")
    no_secret(reason + repr(catalogue))


def test_without_the_runners_check_a_set_url_is_taken_as_it_is() -> None:
    catalogue = parse_catalogue(CATALOGUE, {"GW_TEST_OPS_URL": UNUSABLE[0]})
    assert catalogue.datasource_problems == {} and "ops" in catalogue.datasource_urls


# --- manage.py commands validate -----------------------------------------------------------------


def validate(tmp_path: Path, database_url: str, **urls: str):
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    environ = {**base_environ(database_url), "GATEWAY_COMMANDS_FILE": str(path), **urls}
    environ["GATEWAY_INSTANCE_PATH"] = str(tmp_path / "instance")
    return manage_process.run(
        [sys.executable, "manage.py", "commands", "validate"],
        cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("url", UNUSABLE[:1] + UNUSABLE[-2:])
def test_validate_refuses_an_unusable_url_naming_the_source_never_the_password(tmp_path, database_url, url):
    result = validate(tmp_path, database_url, GW_TEST_OPS_URL=url, GW_TEST_SPARE_URL=sqlite_file(tmp_path / "s.db"))
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'commands.yaml'}: data source 'ops' field url_env (GW_TEST_OPS_URL): "
                      f"{url_problem(url)}"]  # fmt: skip
    no_secret(result.stdout + result.stderr)


def test_a_good_catalogue_still_validates_and_an_unset_url_is_only_a_note(tmp_path, database_url):
    result = validate(tmp_path, database_url, GW_TEST_OPS_URL=sqlite_file(tmp_path / "ops.db"))
    assert result.returncode == 0, result.stderr
    assert "3 commands, 2 data sources, 0 schedules: valid" in result.stdout
    assert "note: spare-report is unavailable here" in result.stdout and "GW_TEST_SPARE_URL is not set" in result.stdout


# --- the running gateway: log, API, readiness ---------------------------------------------------


@pytest.fixture
def ops_unusable(make_app, users, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GW_TEST_OPS_URL", UNUSABLE[0])
    monkeypatch.setenv("GW_TEST_SPARE_URL", sqlite_file(tmp_path / "spare.db"))
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    with caplog.at_level(logging.ERROR, logger="gateway.commands"):
        app = make_app(GATEWAY_COMMANDS_FILE=path)
    return app


def test_the_gateway_starts_logs_the_source_and_refuses_its_commands(ops_unusable, caplog):
    logged = [record.getMessage() for record in caplog.get_records("setup") if record.name == "gateway.commands"]
    assert logged == [
        f"data source 'ops' cannot be used (GW_TEST_OPS_URL: {url_problem(UNUSABLE[0])}); its commands are unavailable"
    ]
    with ops_unusable.app_context():
        secret = tokens.create_token(accounts.get_user("admin"), name="t").secret
    client = ops_unusable.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    schema = client.get("/api/v1/commands/report", headers=headers).get_json()
    assert schema["unavailable_reason"].startswith("data source 'ops' cannot be used (GW_TEST_OPS_URL: ")
    started = client.post("/api/v1/commands/report/runs", json={"params": {}}, headers=headers)
    assert started.status_code == 503 and started.get_json()["error"]["code"] == "unavailable"
    spare = client.post("/api/v1/commands/spare-report/runs", json={"params": {}, "wait": 20}, headers=headers)
    assert spare.get_json()["result"]["rows"] == [[2]]  # the other data source works
    no_secret(str(schema) + started.get_data(as_text=True) + " ".join(logged))
    with ops_unusable.app_context():
        assert db.session.scalar(select(func.count()).select_from(Run).where(Run.command == "report")) == 0


def test_readiness_warns_on_its_fixed_check_and_names_nothing_else(ops_unusable):
    """A warning, not a failure: the replica keeps serving every other command (like an unset URL)."""
    response = ops_unusable.test_client().get("/readyz")
    assert response.status_code == 200 and response.get_json(force=True)["status"] == "warn"
    checks = response.get_json(force=True)["checks"]
    assert checks["catalogue:datasources"] == [{"status": "warn"}]
    assert checks["catalogue:loaded"] == [{"status": "warn"}]  # some commands are unavailable
    body = response.get_data(as_text=True)
    no_secret(body)
    assert "oracle" not in body and "GW_TEST_OPS_URL" not in body and "'ops'" not in body


@pytest.mark.both_engines
def test_a_real_server_url_with_an_option_its_driver_lacks_is_unavailable_until_fixed(
    make_app, users, tmp_path, monkeypatch, backend, database_url
):
    """On PostgreSQL, the gateway's own database as a data source: with an option psycopg does not take the
    command is unavailable and readiness warns; the same URL without it runs the query and readiness passes."""
    if backend == "postgresql":
        good = database_url
        bad = sa.make_url(good).update_query_dict({"ssl_ca": "/ca.pem"}).render_as_string(hide_password=False)
        password = sa.make_url(good).password
    else:
        good, bad, password = sqlite_file(tmp_path / "ops.db"), "sqlite://", None
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    monkeypatch.setenv("GW_TEST_SPARE_URL", good)
    for url, usable in ((bad, False), (good, True)):
        monkeypatch.setenv("GW_TEST_OPS_URL", url)
        app = make_app(GATEWAY_COMMANDS_FILE=path)
        client = app.test_client()
        assert client.get("/readyz").get_json(force=True)["checks"]["catalogue:datasources"] == [
            {"status": "pass" if usable else "warn"}
        ]
        with app.app_context():
            secret = tokens.create_token(accounts.get_user("admin"), name=f"t{usable}").secret
        answer = client.post(
            "/api/v1/commands/report/runs",
            json={"params": {}, "wait": 20},
            headers={"Authorization": f"Bearer {secret}"},
        )
        if usable:
            assert answer.status_code == 200 and answer.get_json()["result"]["rows"] == [[1]]
        else:
            assert answer.status_code == 503
            message = answer.get_json()["error"]["message"]
            assert "data source 'ops' cannot be used" in message
            assert not password or str(password) not in message
