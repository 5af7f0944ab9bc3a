"""Fault injection: the gateway's dependencies fail under it, and it fails closed, says so, and recovers.

Black-box over HTTP against the real app.  Every dependency broken here is
the test's own: a throwaway PostgreSQL cluster reached through a TCP link the
test cuts and restores, a redis-server on its own port, a small tmpfs that
fills up.  The shared PostgreSQL and Redis are never touched.

What each fault must show (DESIGN.md "Fail closed"): run requests get 503 and
spawn nothing (the command would leave a marker file), readiness fails and
names the dependency, liveness stays up (a restart would not help), and once
the dependency is back the same process serves again, its audit chain intact.
Commands that outlive their welcome (ignoring SIGTERM, spawning a swarm) are
killed, to the last grandchild, through the same HTTP path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from gateway import audit, create_app
from gateway.db import stall_guard
from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts, tokens
from gateway.platform.extensions import db
from tests.conftest import PASSWORDS, _migrate, base_environ, close_app, csrf_token_from, login_response
from tests.faultkit import (
    HeldWriteLock,
    OwnPostgres,
    OwnRedis,
    SmallDisk,
    TcpProxy,
    can_mount,
    postgres_bindir,
    processes_of_run,
    wait_until,
)

pytestmark = pytest.mark.both_engines  # faults: each engine fails its own way

PY = sys.executable
TOUCH = "import sys; open(sys.argv[1], 'w').write('ran')"
# Two levels of children, the inner ones orphaned (double fork) but still in the run's process group.
SWARM = "for i in $(seq 12); do (sh -c 'sleep 300 & sleep 300' &) ; sleep 300 & done; echo spawned; wait"


def catalogue_text(marker: Path) -> str:
    return textwrap.dedent(
        f"""
        commands:
          - name: touch
            title: Leaves a marker file when it runs
            kind: shell
            argv: ["{PY}", "-c", "{TOUCH}", "{marker}"]
            timeout: 10
          - name: limited-touch
            title: The same, with a per-user rate limit
            kind: shell
            argv: ["{PY}", "-c", "{TOUCH}", "{marker}"]
            rate_limit: 1000/minute
            timeout: 10
          - name: nap
            title: Sleeps
            kind: shell
            argv: ["sleep", "{{seconds}}"]
            params:
              seconds: {{type: integer, min: 0, max: 30, default: 2}}
            timeout: 30
          - name: stubborn
            title: Ignores SIGTERM
            kind: shell
            argv: ["sh", "-c", "trap '' TERM; echo ready; sleep 300"]
            timeout: 1
          - name: swarm
            title: Spawns children and grandchildren
            kind: shell
            argv: ["sh", "-c", "{SWARM}"]
            timeout: 3
        """
    )


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of this test session's own, with a migrated template database."""
    if postgres_bindir() is None:
        pytest.skip("initdb is not installed")
    # Not under pytest's temporary root: the postgres account must be able to reach the directory.
    root = Path(tempfile.mkdtemp(prefix="gateway-own-pg-"))
    cluster = OwnPostgres(root)
    try:
        try:
            cluster.init()
            cluster.start()
        except Exception as exc:  # no postgres account, no permission: this machine cannot host a cluster
            pytest.skip(f"cannot start a throwaway PostgreSQL cluster: {getattr(exc, 'stderr', exc)}")
        cluster.execute("CREATE DATABASE fault_template")
        _migrate(cluster.url("fault_template"), tmp_path_factory.mktemp("own-pg-migrate"))
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


class PgDatabase:
    """One test's database on the own cluster, and the link the gateway reaches it through."""

    def __init__(self, cluster: OwnPostgres):
        self.cluster = cluster
        self.name = f"fault_{uuid.uuid4().hex[:12]}"
        cluster.execute(f'CREATE DATABASE "{self.name}" TEMPLATE fault_template')
        self.link = TcpProxy(cluster.port)
        self.link.start()

    @property
    def url(self) -> str:
        return self.cluster.url(self.name, port=self.link.port)

    def drop_connections(self) -> None:
        self.cluster.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def close(self) -> None:
        self.link.close()
        self.cluster.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture
def pg_database(own_pg: OwnPostgres) -> Iterator[PgDatabase]:
    database = PgDatabase(own_pg)
    yield database
    database.close()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "marker"


@pytest.fixture
def build_app(tmp_path: Path, marker: Path) -> Iterator[Callable[..., Flask]]:
    """``build_app(database_url, **settings)``: a gateway on that database with the fault catalogue."""
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(catalogue_text(marker))
    apps: list[Flask] = []

    def factory(database_url: str, **overrides: Any) -> Flask:
        settings = {"GATEWAY_COMMANDS_FILE": str(catalogue), "RUN_HEARTBEAT_SECONDS": "1", **overrides}
        app = create_app(base_environ(database_url, **settings), instance_path=tmp_path / f"instance{len(apps)}")
        apps.append(app)
        with app.app_context():
            accounts.create_user("admin", PASSWORDS["admin"], is_admin=True)
        return app

    yield factory
    for app in apps:
        close_app(app)


def bearer(app: Flask) -> dict[str, str]:
    with app.app_context():
        issued = tokens.create_token(accounts.get_user("admin"), name="faults")
    return {"Authorization": f"Bearer {issued.secret}"}


def start_run(client, headers: dict[str, str], name: str, wait: int = 10, **params: Any):
    return client.post(f"/api/v1/commands/{name}/runs", json={"params": params, "wait": wait}, headers=headers)


def readiness(client) -> tuple[int, dict[str, str]]:
    response = client.get("/readyz")
    body = response.get_json(force=True)
    return response.status_code, {name: entries[0]["status"] for name, entries in body["checks"].items()}


def ready(client) -> bool:
    return readiness(client)[0] == 200


def assert_unavailable(response) -> None:
    assert response.status_code == 503, (response.status_code, response.get_data(as_text=True)[:500])
    if response.is_json:
        assert response.get_json()["error"]["code"] == "unavailable"


def ledger(app: Flask) -> dict[str, Any]:
    """What the database recorded: runs, run events, and whether the chain verifies."""
    with app.app_context():
        db.session.rollback()
        events = [
            (e.event, e.run_id, e.outcome)
            for e in db.session.scalars(
                select(AuditEvent).where(AuditEvent.event.like("run.%")).order_by(AuditEvent.seq)
            )
        ]
        result = {
            "runs": db.session.scalar(select(func.count()).select_from(Run)),
            "statuses": dict(db.session.execute(select(Run.id, Run.status)).all()),
            "events": events,
            "verified": audit.verify(db.session, audit.Keyring.from_config(app.config)).ok,
        }
        db.session.remove()
    return result


def signed_in(client) -> bool:
    return client.get("/account").status_code == 200


def web_form(client, name: str) -> str:
    return csrf_token_from(client.get(f"/commands/{name}").get_data(as_text=True))


def warm_up(app: Flask, marker: Path) -> tuple[Any, dict[str, str], Any, str]:
    """A working gateway first: an API run leaves the marker, a browser session is signed in."""
    api = app.test_client()
    headers = bearer(app)
    response = start_run(api, headers, "touch")
    assert response.status_code == 200 and response.get_json()["status"] == "succeeded", response.get_json()
    assert marker.exists()
    marker.unlink()
    browser = app.test_client()
    assert login_response(browser, "admin", PASSWORDS["admin"]).status_code == 302
    csrf = web_form(browser, "touch")
    assert ready(api)
    return api, headers, browser, csrf


def assert_writes_refused(app: Flask, api: Any, headers: dict[str, str], browser: Any, csrf: str, marker: Path) -> None:
    """A database that refuses writes: runs (API, web form) and sign-in fail closed, readiness says so."""
    assert_unavailable(start_run(api, headers, "touch"))
    assert_unavailable(browser.post("/commands/touch", data={"csrf_token": csrf}))
    fresh = app.test_client()
    assert_unavailable(login_response(fresh, "admin", PASSWORDS["admin"]))
    assert not signed_in(fresh)
    status, checks = readiness(api)
    assert status == 503 and checks["database:connection"] == "fail", checks
    assert_nothing_spawned(marker)


def assert_one_clean_run(app: Flask, api: Any, headers: dict[str, str], marker: Path, before: dict[str, Any]) -> None:
    """After recovery one run works, and it is the only thing recorded since ``before``: nothing half-done."""
    response = start_run(api, headers, "touch")
    assert response.status_code == 200, response.get_json()
    assert marker.exists()
    after = ledger(app)
    assert after["runs"] == before["runs"] + 1  # nothing ran, or was recorded as running, in between
    assert [e[0] for e in after["events"][len(before["events"]) :]] == ["run.started", "run.finished"]
    assert after["verified"]


def assert_nothing_spawned(marker: Path) -> None:
    time.sleep(0.3)  # a spawn that slipped through would have written by now
    assert not marker.exists(), "a command ran while the gateway should have refused"


# --- (a) the database becomes unreachable --------------------------------------------------------


@pytest.mark.slow
def test_database_unreachable_refuses_runs_with_503_spawns_nothing_and_recovers(build_app, pg_database, marker):
    app = build_app(pg_database.url)
    api, headers, browser, csrf = warm_up(app, marker)

    pg_database.link.cut()
    started = time.monotonic()
    assert_unavailable(start_run(api, headers, "touch"))
    assert_unavailable(browser.post("/commands/touch", data={"csrf_token": csrf}))
    assert time.monotonic() - started < 10  # refused promptly, not after a long hang
    status, checks = readiness(api)
    assert status == 503 and checks["database:connection"] == "fail", checks
    assert api.get("/livez").status_code == 200  # a restart would not bring the database back
    assert_nothing_spawned(marker)

    pg_database.link.restore()
    assert wait_until(lambda: ready(api), timeout=15), readiness(api)
    response = start_run(api, headers, "touch")
    assert response.status_code == 200 and response.get_json()["status"] == "succeeded", response.get_json()
    assert marker.exists()  # the same process runs commands again: recovered without a restart
    recorded = ledger(app)
    assert recorded["runs"] == 2 and set(recorded["statuses"].values()) == {"succeeded"}
    assert [e[0] for e in recorded["events"]] == ["run.started", "run.finished"] * 2
    assert recorded["verified"]


@pytest.mark.slow
def test_readiness_answers_within_its_deadline_while_the_database_is_down(build_app, pg_database, marker):
    app = build_app(pg_database.url)
    client = app.test_client()
    assert ready(client)
    pg_database.link.cut()
    for _ in range(3):
        started = time.monotonic()
        status, checks = readiness(client)
        assert status == 503 and checks["database:connection"] == "fail"
        assert checks["database:migrations"] == "fail"
        assert time.monotonic() - started < 1.5
    pg_database.link.restore()
    assert wait_until(lambda: ready(client), timeout=15)


@pytest.mark.slow
def test_a_run_whose_end_falls_in_a_database_outage_still_ends_exactly_once(build_app, pg_database, marker):
    app = build_app(pg_database.url)
    client = app.test_client()
    headers = bearer(app)
    accepted = start_run(client, headers, "nap", wait=0, seconds=2)
    assert accepted.status_code == 202, accepted.get_json()
    run_id = accepted.get_json()["id"]

    pg_database.link.cut()
    # A long-poll during the outage is refused at once (it cannot authenticate the caller), not hung.
    assert_unavailable(client.get(f"/api/v1/runs/{run_id}?wait=10", headers=headers))
    time.sleep(4)  # the command ends (after 2 s) while the database is unreachable
    pg_database.link.restore()
    assert wait_until(lambda: ready(client), timeout=15)

    def ended() -> bool:
        response = client.get(f"/api/v1/runs/{run_id}", headers=headers)
        return response.status_code == 200 and response.get_json()["status"] not in ("queued", "running")

    assert wait_until(ended, timeout=15), client.get(f"/api/v1/runs/{run_id}", headers=headers).get_json()
    recorded = ledger(app)
    assert [e for e in recorded["events"] if e[0] == "run.finished"] == [
        ("run.finished", run_id, recorded["statuses"][run_id])
    ]
    assert recorded["verified"]


# --- (b) the database refuses writes --------------------------------------------------------------


@pytest.mark.slow
def test_a_read_only_postgresql_fails_closed_and_recovers(build_app, pg_database, marker):
    app = build_app(pg_database.url)
    api, headers, browser, csrf = warm_up(app, marker)
    before = ledger(app)

    # A failover onto a read-only standby, or an operator freezing the database: reads work, writes do not.
    pg_database.cluster.execute(f'ALTER DATABASE "{pg_database.name}" SET default_transaction_read_only = on')
    pg_database.drop_connections()
    readiness(api)  # the pool notices the dropped connections and reconnects (read-only now)

    assert_writes_refused(app, api, headers, browser, csrf, marker)

    pg_database.cluster.execute(f'ALTER DATABASE "{pg_database.name}" RESET default_transaction_read_only')
    pg_database.drop_connections()
    assert wait_until(lambda: ready(api), timeout=15), readiness(api)
    assert_one_clean_run(app, api, headers, marker, before)


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root")
def test_a_full_disk_under_sqlite_fails_closed_and_recovers(build_app, tmp_path, marker, sqlite_template):
    disk = SmallDisk(tmp_path / "disk")
    try:
        disk.mount()
    except subprocess.CalledProcessError as exc:  # root without CAP_SYS_ADMIN (a locked-down container)
        pytest.skip(f"cannot mount a tmpfs here: {exc.stderr!r}")
    try:
        path = disk.path / "gateway.db"
        path.write_bytes(sqlite_template.read_bytes())
        app = build_app(f"sqlite:///{path}")
        api, headers, browser, csrf = warm_up(app, marker)
        before = ledger(app)

        disk.fill()
        assert_writes_refused(app, api, headers, browser, csrf, marker)

        disk.free()
        assert wait_until(lambda: ready(api), timeout=10), readiness(api)
        assert_one_clean_run(app, api, headers, marker, before)
        with app.app_context():
            db.engine.dispose()
    finally:
        disk.unmount()


# --- (f) another process holds the database's write lock ------------------------------------------

REQUEST_LOCK_WAIT = 1  # WRITE_LOCK_TIMEOUT_SECONDS in these tests


@pytest.mark.slow
def test_a_held_write_lock_refuses_runs_with_503_within_the_request_bound_and_recovers(build_app, database_url, marker):
    # Before WRITE_LOCK_TIMEOUT_SECONDS a run request waited 30 s (SQLite's busy timeout) or 20 s
    # (PostgreSQL: the stall guard) for its 503: a client with a normal timeout never saw it.
    app = build_app(database_url, WRITE_LOCK_TIMEOUT_SECONDS=str(REQUEST_LOCK_WAIT))
    api, headers, browser, csrf = warm_up(app, marker)
    before = ledger(app)

    with HeldWriteLock(database_url, audit.PG_LOCK_KEY):
        for send in (
            lambda: start_run(api, headers, "touch"),
            lambda: browser.post("/commands/touch", data={"csrf_token": csrf}),
        ):
            started = time.monotonic()
            assert_unavailable(send())
            waited = time.monotonic() - started
            assert REQUEST_LOCK_WAIT * 0.8 <= waited < REQUEST_LOCK_WAIT + 3, waited  # it waited, then gave up
        assert_nothing_spawned(marker)

    assert_one_clean_run(app, api, headers, marker, before)


@pytest.mark.slow
def test_a_runs_end_waits_behind_a_held_write_lock_longer_than_a_request_would(build_app, database_url, marker, caplog):
    # A long heartbeat: an end given up on would only be retried 30 s later, long after the assertions.
    app = build_app(database_url, WRITE_LOCK_TIMEOUT_SECONDS=str(REQUEST_LOCK_WAIT), RUN_HEARTBEAT_SECONDS="30")
    client = app.test_client()
    headers = bearer(app)
    accepted = start_run(client, headers, "nap", wait=0, seconds=1)
    assert accepted.status_code == 202, accepted.get_json()
    run_id = accepted.get_json()["id"]

    with HeldWriteLock(database_url, audit.PG_LOCK_KEY):
        time.sleep(REQUEST_LOCK_WAIT + 2)  # the command ends after 1 s; recording its end waits behind the lock

    def ended() -> bool:
        return client.get(f"/api/v1/runs/{run_id}", headers=headers).get_json()["status"] != "running"

    assert wait_until(ended, timeout=5)
    assert client.get(f"/api/v1/runs/{run_id}", headers=headers).get_json()["status"] == "succeeded"
    assert "could not record the end" not in caplog.text  # it waited; it did not give up and defer
    recorded = ledger(app)
    assert [e for e in recorded["events"] if e[1] == run_id] == [
        ("run.started", run_id, "running"),
        ("run.finished", run_id, "succeeded"),
    ]
    assert recorded["verified"]


# --- (e) the rate-limit storage goes away --------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"cannot start a redis-server of our own: {exc}")
    yield server
    server.kill()


@pytest.fixture
def redis_app(build_app, own_redis, tmp_path):
    return sqlite_app(build_app, tmp_path, RATELIMIT_STORAGE_URI=own_redis.url, LOGIN_RATE_LIMIT="1000/minute")


@pytest.mark.slow
def test_redis_down_makes_sign_in_and_rate_limited_runs_fail_closed_until_it_returns(redis_app, own_redis, marker):
    app = redis_app
    api, headers, browser, _ = warm_up(app, marker)
    assert start_run(api, headers, "limited-touch").status_code == 200
    marker.unlink()
    before = ledger(app)

    own_redis.kill()
    fresh = app.test_client()
    response = login_response(fresh, "admin", PASSWORDS["admin"])
    assert_unavailable(response)
    assert response.headers.get("Retry-After")
    assert not signed_in(fresh)
    assert_unavailable(start_run(api, headers, "limited-touch"))
    assert_unavailable(browser.post("/commands/limited-touch", data={"csrf_token": web_form(browser, "limited-touch")}))
    status, checks = readiness(api)
    assert status == 503 and checks["ratelimit:storage"] == "fail", checks
    assert checks["database:connection"] == "pass"  # readiness names the dependency that is down
    assert_nothing_spawned(marker)
    during = ledger(app)
    assert during["runs"] == before["runs"]  # nothing started...
    refused = [("run.rejected", None, "ratelimit_unavailable")] * 2  # ...and both refusals are on record
    assert during["events"] == before["events"] + refused

    own_redis.start()  # same port: the gateway's configuration is unchanged
    assert wait_until(lambda: ready(api), timeout=10), readiness(api)
    assert login_response(fresh, "admin", PASSWORDS["admin"]).status_code == 302
    response = start_run(api, headers, "limited-touch")
    assert response.status_code == 200 and response.get_json()["status"] == "succeeded"
    assert marker.exists()
    assert ledger(app)["verified"]


@pytest.mark.slow
def test_redis_down_refuses_runs_of_commands_without_their_own_rate_limit(redis_app, own_redis, marker):
    api = redis_app.test_client()
    headers = bearer(redis_app)
    own_redis.kill()
    response = start_run(api, headers, "touch")
    time.sleep(0.3)
    ran = marker.exists()
    assert response.status_code == 503 and not ran, (response.status_code, ran)


# --- (c, d) commands that will not stop ----------------------------------------------------------


def sqlite_app(build_app, tmp_path: Path, **settings: Any) -> Flask:
    path = tmp_path / "gateway.db"
    _migrate(f"sqlite:///{path}", tmp_path / "migrate")
    return build_app(f"sqlite:///{path}", **settings)


def finished_events(app: Flask, run_id: str) -> list[tuple[str, dict]]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.run_id == run_id, AuditEvent.event == "run.finished")
        ).all()
        return [(row.outcome, row.detail) for row in rows]


@pytest.mark.slow
def test_a_command_ignoring_sigterm_is_killed_at_the_grace_deadline_through_the_api(build_app, tmp_path):
    from gateway.runners.shell import KILL_GRACE_SECONDS

    app = sqlite_app(build_app, tmp_path)
    client = app.test_client()
    headers = bearer(app)
    started = time.monotonic()
    response = start_run(client, headers, "stubborn", wait=30)
    elapsed = time.monotonic() - started
    run = response.get_json()
    assert response.status_code == 200 and run["status"] == "timed_out", run
    assert run["exit_code"] == -9  # SIGTERM was ignored; SIGKILL ended it
    assert run["output"] == "ready\n"
    assert 1 + KILL_GRACE_SECONDS - 0.2 <= elapsed < 1 + KILL_GRACE_SECONDS + 5  # timeout + grace, not forever
    assert processes_of_run(run["id"]) == []
    [(outcome, detail)] = finished_events(app, run["id"])
    assert outcome == "timed_out" and detail["exit_code"] == -9


@pytest.mark.slow
def test_a_swarm_of_children_and_grandchildren_is_killed_to_the_last_on_timeout(build_app, tmp_path):
    app = sqlite_app(build_app, tmp_path)
    client = app.test_client()
    headers = bearer(app)
    accepted = start_run(client, headers, "swarm", wait=0)
    assert accepted.status_code == 202, accepted.get_json()
    run_id = accepted.get_json()["id"]
    seen: set[int] = set()

    def counted() -> bool:
        seen.update(processes_of_run(run_id))
        return len(seen) >= 12 * 4  # per round: a subshell's sh, its two sleeps, and a sleep of the top shell

    assert wait_until(counted, timeout=10), len(seen)
    run = client.get(f"/api/v1/runs/{run_id}?wait=30", headers=headers).get_json()
    assert run["status"] == "timed_out", run
    assert wait_until(lambda: processes_of_run(run_id) == [], timeout=5), processes_of_run(run_id)
    [(outcome, _)] = finished_events(app, run_id)
    assert outcome == "timed_out"


@pytest.mark.slow
def test_cancelling_a_swarm_kills_it_to_the_last_too(build_app, tmp_path):
    app = sqlite_app(build_app, tmp_path)
    client = app.test_client()
    headers = bearer(app)
    run_id = start_run(client, headers, "swarm", wait=0).get_json()["id"]
    assert wait_until(lambda: len(processes_of_run(run_id)) >= 12, timeout=10)
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers).status_code == 202
    run = client.get(f"/api/v1/runs/{run_id}?wait=30", headers=headers).get_json()
    assert run["status"] == "cancelled", run
    assert wait_until(lambda: processes_of_run(run_id) == [], timeout=5), processes_of_run(run_id)


# --- (a') the network to the database stalls (packets dropped, nothing refused) ----------------


def prime_pool(app: Flask, connections: int = 8) -> None:
    """As after a busy minute: the pool holds several open connections (set-up, not the fault)."""
    with app.app_context():
        held = [db.engine.connect() for _ in range(connections)]
        for connection in held:
            connection.close()


@pytest.mark.slow
def test_probes_answer_in_bounded_time_while_the_database_link_stalls(build_app, pg_database, marker):
    app = build_app(pg_database.url)
    api, _, _, _ = warm_up(app, marker)
    prime_pool(app)
    pg_database.link.stall()
    try:
        for _ in range(3):
            started = time.monotonic()
            status, checks = readiness(api)
            assert status == 503 and checks["database:connection"] == "fail", checks
            assert time.monotonic() - started < 1.5  # probes never hang on the database
            assert api.get("/livez").status_code == 200
    finally:
        pg_database.link.heal()
    assert wait_until(lambda: ready(api), timeout=30), readiness(api)


@pytest.mark.slow
def test_run_requests_get_503_in_bounded_time_while_the_database_link_stalls(
    build_app, pg_database, marker, monkeypatch
):
    # A stalled link answers nothing: stall_guard ends a request's statement at its deadline
    # (20 s in production; shorter here so the test does not wait that long).
    monkeypatch.setattr(stall_guard.GUARD, "deadline", 5.0)
    app = build_app(pg_database.url)
    api, headers, _, _ = warm_up(app, marker)
    prime_pool(app)
    pg_database.link.stall()
    try:
        started = time.monotonic()
        answers: list[list[Any]] = [[] for _ in range(6)]
        workers = [
            threading.Thread(target=lambda a=a: a.append(start_run(app.test_client(), headers, "touch")), daemon=True)
            for a in answers
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(max(0.0, started + 30 - time.monotonic()))
        assert all(answers), f"{sum(1 for a in answers if not a)} of 6 run requests still hang after 30 s"
        for answer in answers:
            assert_unavailable(answer[0])
        assert_nothing_spawned(marker)
    finally:
        pg_database.link.heal()
    assert wait_until(lambda: ready(api), timeout=30), readiness(api)
    assert start_run(api, headers, "touch").status_code == 200
    assert ledger(app)["verified"]
