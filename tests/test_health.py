"""Kubernetes probes: /livez, /healthz, /readyz (DESIGN.md "Probes").

They answer application/health+json with check names and statuses only, need no
sign-in, set no cookie, are never rate limited, and /readyz follows the real
state of the database and the process without a restart.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from gateway.db import migrate
from gateway.platform import health
from tests.conftest import PG_ADMIN_URL, login_response

PROBES = ("/livez", "/healthz", "/readyz")
# The checks this suite is about; other parts of the gateway register more (catalogue, executor).
DATABASE_CHECKS = {"database:connection": "pass", "database:migrations": "pass", "process:draining": "pass"}
LEAK_MARKERS = ("Traceback", "Error", "Exception", "sqlite", "postgresql", "psycopg", "hostname")


def probe(client: FlaskClient, path: str = "/readyz") -> tuple[int, dict]:
    response = client.get(path)
    assert response.headers["Content-Type"] == "application/health+json"
    return response.status_code, response.get_json(force=True)


def statuses(body: dict) -> dict[str, str]:
    """{check name: status}, asserting each check has the health+json shape."""
    result = {}
    for name, entries in body["checks"].items():
        assert isinstance(entries, list) and len(entries) == 1
        result[name] = entries[0]["status"]
    return result


def overall(checks: dict[str, str]) -> str:
    """The health+json rule: any fail fails, else any warn warns, else pass."""
    values = set(checks.values())
    return "fail" if "fail" in values else "warn" if "warn" in values else "pass"


def healthy_subset(body: dict, **expected: str) -> dict[str, str]:
    """The database checks (plus ``expected``) as reported, for an exact comparison."""
    names = {**DATABASE_CHECKS, **expected}
    return {name: status for name, status in statuses(body).items() if name in names}


def assert_no_leak(text: str, database_url: str) -> None:
    assert socket.gethostname() not in text
    for marker in LEAK_MARKERS:
        assert marker not in text
    database = sa.make_url(database_url).database
    assert database and database not in text


@pytest.mark.parametrize("path", PROBES)
def test_probe_answers_health_json_with_names_and_statuses_only(client, database_url, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/health+json"
    body = json.loads(response.get_data(as_text=True))
    assert set(body) == {"status", "checks"}
    for entries in body["checks"].values():
        assert entries in ([{"status": "pass"}], [{"status": "warn"}])
    assert body["status"] == overall(statuses(body))
    assert_no_leak(response.get_data(as_text=True), database_url)


@pytest.mark.both_engines  # the database check differs per engine
def test_readiness_checks_the_database_and_the_process(client):
    status, body = probe(client)
    assert status == 200
    assert healthy_subset(body) == DATABASE_CHECKS


def test_status_is_pass_when_every_check_passes(app, client):
    registry = health._registry(app)
    registry.readiness = {"test:one": lambda: "pass", "test:two": lambda: "pass"}
    status, body = probe(client)
    assert (status, body) == (
        200,
        {"status": "pass", "checks": {"test:one": [{"status": "pass"}], "test:two": [{"status": "pass"}]}},
    )


def test_verbose_adds_a_timing_per_check(client):
    response = client.get("/readyz?verbose")
    assert response.status_code == 200
    body = response.get_json(force=True)
    assert body["checks"]
    for entries in body["checks"].values():
        (entry,) = entries
        assert entry["status"] in ("pass", "warn")
        assert entry["observedUnit"] == "ms"
        assert isinstance(entry["observedValue"], (int, float))
        assert 0 <= entry["observedValue"] < 1000


@pytest.mark.parametrize("path", PROBES)
def test_probes_need_no_sign_in_and_set_no_cookie(client, path):
    response = client.get(path)  # anonymous, no CSRF token, no session
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_probes_work_for_a_signed_in_browser_without_touching_its_session(client, users):
    assert login_response(client, "staff", users["staff"].password).status_code == 302
    response = client.get("/readyz")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_probes_are_not_rate_limited(make_app):
    app = make_app(LOGIN_RATE_LIMIT="1/minute")
    client = app.test_client()
    # The tiny limit is live in this app ...
    assert login_response(client, "nobody", "wrong-password-123").status_code != 429
    assert login_response(client, "nobody", "wrong-password-123").status_code == 429
    # ... and the probes never count against anything. (A readiness check may still miss its 0.8 s
    # deadline on a loaded machine and answer 503; what must never come is a 429.)
    for _ in range(100):
        assert client.get("/livez").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code != 429 and ready.get_json()["checks"]


def test_probes_follow_health_allowed_networks_not_the_main_allowlist(make_app):
    client = make_app(ALLOWED_NETWORKS="127.0.0.0/8").test_client()
    outside = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/login", environ_base=outside).status_code == 403
    assert client.get("/readyz", environ_base=outside).status_code == 200  # default: any network

    narrowed = make_app(HEALTH_ALLOWED_NETWORKS="10.0.0.0/8").test_client()
    assert narrowed.get("/readyz", environ_base=outside).status_code == 200
    response = narrowed.get("/readyz", environ_base={"REMOTE_ADDR": "192.168.1.9"})
    assert response.status_code == 403
    assert "database" not in response.get_data(as_text=True)


def test_results_are_not_cached(app, client):
    assert probe(client)[0] == 200
    app.extensions["gateway.draining"] = True
    status, body = probe(client)
    assert status == 503
    assert statuses(body)["process:draining"] == "fail"
    app.extensions["gateway.draining"] = False
    assert probe(client)[0] == 200


def test_draining_makes_readiness_fail_but_not_liveness(app, client):
    app.extensions["gateway.draining"] = True
    status, body = probe(client)
    assert (status, body["status"]) == (503, "fail")
    assert probe(client, "/livez")[0] == 200


def test_a_warn_check_gives_warn_and_200(app, client):
    health.add_readiness_check(app, "test:degraded", lambda: "warn")
    status, body = probe(client)
    assert status == 200
    assert body["status"] == "warn"
    assert healthy_subset(body, **{"test:degraded": "warn"}) == {**DATABASE_CHECKS, "test:degraded": "warn"}


def test_a_raising_check_fails_without_showing_the_exception(app, client, database_url):
    def broken() -> str:
        raise RuntimeError(f"secret detail from {socket.gethostname()} at {database_url}")

    health.add_readiness_check(app, "test:broken", broken)
    response = client.get("/readyz?verbose")
    assert response.status_code == 503
    body = response.get_json(force=True)
    assert body["status"] == "fail"
    assert statuses(body)["test:broken"] == "fail"
    text = response.get_data(as_text=True)
    assert "secret detail" not in text
    assert_no_leak(text, database_url)


def test_a_check_returning_garbage_fails(app, client):
    health.add_readiness_check(app, "test:garbage", lambda: "ok")
    status, body = probe(client)
    assert status == 503
    assert statuses(body)["test:garbage"] == "fail"


def test_a_hanging_check_is_cut_at_the_deadline(app, client):
    health.add_readiness_check(app, "test:slow", lambda: time.sleep(5) or "pass")
    started = time.monotonic()
    status, body = probe(client)
    elapsed = time.monotonic() - started
    assert elapsed < 3  # the check sleeps 5 s; the deadline is 0.8 s (slack for a loaded CI machine)
    assert status == 503
    assert statuses(body)["test:slow"] == "fail"
    assert statuses(body)["database:connection"] == "pass"
    # Liveness does not wait for readiness checks.
    started = time.monotonic()
    assert probe(client, "/livez")[0] == 200
    assert time.monotonic() - started < 3  # not after the hanging check's 5 s


def test_a_hanging_check_cannot_starve_the_others(app, client):
    """Probes arriving while a check hangs share its run: the pool never fills up with copies."""
    release = threading.Event()
    calls = []

    def hang() -> str:
        calls.append(1)
        release.wait(10)
        return "pass"

    health.add_readiness_check(app, "test:hang", hang)
    try:
        results: list[int] = []

        def ask() -> None:
            results.append(app.test_client().get("/readyz").status_code)

        threads = [threading.Thread(target=ask) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert results == [503] * 20
        status, body = probe(client)
        assert status == 503
        assert healthy_subset(body, **{"test:hang": "fail"}) == {**DATABASE_CHECKS, "test:hang": "fail"}
        assert len(calls) == 1
    finally:
        release.set()
    deadline = time.monotonic() + 3
    while probe(client)[0] != 200:
        assert time.monotonic() < deadline, "readiness did not recover after the check returned"
        time.sleep(0.05)


# --- readiness follows the database --------------------------------------------------------


@pytest.mark.both_engines  # migrations run per engine
def test_readiness_flips_on_a_pending_migration(app, client, database_url):
    with app.app_context():
        migrate.downgrade("base")
    status, body = probe(client)
    assert status == 503
    assert statuses(body)["database:migrations"] == "fail"
    assert statuses(body)["database:connection"] == "pass"
    assert_no_leak(json.dumps(body), database_url)

    with app.app_context():
        migrate.upgrade("head")
    status, body = probe(client)
    assert status == 200
    assert healthy_subset(body) == DATABASE_CHECKS


@pytest.mark.parametrize("backend", ["sqlite"])
def test_readiness_flips_when_the_sqlite_file_goes_away(app, client, database_url, tmp_path):
    assert probe(client)[0] == 200  # the pool now holds a connection to the file
    path = Path(sa.make_url(database_url).database)
    moved = tmp_path / "moved-away.db"
    shutil.move(path, moved)
    try:
        status, body = probe(client)
        assert status == 503
        assert statuses(body)["database:connection"] == "fail"
        assert statuses(body)["database:migrations"] == "fail"
        assert_no_leak(json.dumps(body), database_url)
        assert not path.exists(), "the probe created an empty database in place of the missing one"
    finally:
        shutil.move(moved, path)
    status, body = probe(client)
    assert status == 200, body
    assert healthy_subset(body) == DATABASE_CHECKS


@pytest.fixture
def pg_admin() -> Callable[[str], None]:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def execute(sql: str) -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql(sql)

    yield execute
    engine.dispose()


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_readiness_flips_when_postgresql_refuses_connections(app, client, database_url, pg_admin):
    name = sa.make_url(database_url).database
    assert probe(client)[0] == 200  # the pool now holds live connections
    pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        status, body = probe(client)
        assert status == 503
        assert statuses(body)["database:connection"] == "fail"
        assert_no_leak(json.dumps(body), database_url)
    finally:
        pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    status, body = probe(client)
    assert status == 200, body
    assert healthy_subset(body) == DATABASE_CHECKS


def test_readiness_and_liveness_share_no_state_between_apps(make_app):
    """Each app has its own registry: a check added to one app does not leak into another."""
    first: Flask = make_app()
    second: Flask = make_app()
    health.add_readiness_check(first, "test:only-first", lambda: "fail")
    assert first.test_client().get("/readyz").status_code == 503
    assert second.test_client().get("/readyz").status_code == 200
