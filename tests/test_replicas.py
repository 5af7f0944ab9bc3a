"""Two real gunicorn replicas on one PostgreSQL database (and one Redis) behave as one service.

A run started on replica A is fetched, long-polled, streamed and cancelled
through replica B; B's long-poll wakes through PostgreSQL LISTEN/NOTIFY within
a fraction of a second of A finishing the run; per-command concurrency and
per-user rate limits hold across replicas; the audit chain stays linear under
concurrent runs through both; a replica killed with SIGKILL has its run
marked ``lost`` by another replica's reaper.

The replica helpers here are shared with tests/test_shutdown.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from config import PROJECT_ROOT
from gateway.identity import accounts, tokens
from tests.conftest import base_environ, create_pg_database, drop_pg_database, pg_url

BOOT_SECONDS = 30
HEARTBEAT = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def replica_environ(database_url: str, catalogue: Path, **overrides: str) -> dict[str, str]:
    return base_environ(
        database_url,
        PATH=os.environ["PATH"],
        GATEWAY_COMMANDS_FILE=str(catalogue),
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/15",
        RUN_HEARTBEAT_SECONDS="1",
        GATEWAY_ENV="testing",
        **overrides,
    )


@dataclass
class Replica:
    name: str
    base: str
    process: subprocess.Popen
    log: Path
    token: str = ""

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 40)
        return requests.request(method, self.base + path, headers=headers, **kwargs)

    def start_run(self, command: str, **params: Any) -> requests.Response:
        return self.request("POST", f"/api/v1/commands/{command}/runs", json={"params": params})

    def run(self, run_id: str, wait: float = 0) -> dict[str, Any]:
        response = self.request("GET", f"/api/v1/runs/{run_id}", params={"wait": wait} if wait else None)
        assert response.status_code == 200, response.text
        return response.json()

    def kill(self) -> None:
        """SIGKILL the whole replica (master and workers): nothing of it gets to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the whole session, even after the master is gone
        self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_replica(
    name: str, environ: dict[str, str], folder: Path, token: str = "", workers: int = 1, threads: int = 16
) -> Replica:
    """Boot a replica and wait until it is ready; its output goes to ``folder/<name>.log``."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    env = {**environ, "GATEWAY_INSTANCE_PATH": str(folder / f"instance-{name}")}
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app", "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", str(workers), "--threads", str(threads)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    replica = Replica(name=name, base=f"http://127.0.0.1:{port}", process=process, log=log, token=token)
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"replica {name} exited at boot:\n{replica.output()}")
        try:
            if requests.get(replica.base + "/readyz", timeout=2).status_code == 200:
                return replica
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or no worker booted yet
            pass
        time.sleep(0.1)
    replica.kill()
    raise AssertionError(f"replica {name} not ready in {BOOT_SECONDS}s:\n{replica.output()}")


def admin_token(database_url: str, folder: Path) -> str:
    """An admin account and its bearer token, written by the test process into the shared database."""
    from gateway import create_app
    from gateway.platform.extensions import db

    app = create_app(base_environ(database_url), instance_path=folder / "instance-test")
    with app.app_context():
        user = accounts.create_user("admin", "admin-password-123", is_admin=True)
        secret = tokens.create_token(user, name="replicas").secret
        db.session.remove()
        db.engine.dispose()
    return secret


def wait_until(predicate: Any, seconds: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {seconds}s")


def run_events(database_url: str, run_id: str) -> list[str]:
    """The audit events recorded about one run, in ledger order."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT event FROM audit_events WHERE run_id = :run_id ORDER BY seq"), {"run_id": run_id}
            )
            return [row.event for row in rows]
    finally:
        engine.dispose()


def run_rows(database_url: str) -> dict[str, str]:
    """Every run's status, straight from the database."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {row.id: row.status for row in connection.execute(sa.text("SELECT id, status FROM runs"))}
    finally:
        engine.dispose()


def finished_at(run: dict[str, Any]) -> float:
    return datetime.fromisoformat(run["finished_at"].replace("Z", "+00:00")).astimezone(UTC).timestamp()


@pytest.fixture(scope="module")
def shared_database(pg_template: str) -> Iterator[str]:
    name = create_pg_database(template=pg_template)
    yield pg_url(name)
    drop_pg_database(name)


LIMITED = f"limited-{uuid.uuid4().hex[:8]}"  # Redis keeps counters across test sessions: a fresh name each time
CATALOGUE = textwrap.dedent(
    f"""
    commands:
      - name: quick
        title: Prints a line
        kind: shell
        argv: ["echo", "hello"]
      - name: nap
        title: Prints, sleeps, prints
        kind: shell
        argv: ["sh", "-c", "echo begin; sleep $0; echo end", "{{seconds}}"]
        params:
          seconds: {{type: number, min: 0, max: 60, default: 1}}
        timeout: 60
      - name: solo
        title: One at a time
        kind: shell
        argv: ["sleep", "{{seconds}}"]
        params:
          seconds: {{type: integer, min: 0, max: 60, default: 30}}
        timeout: 60
        concurrency: 1
      - name: {LIMITED}
        title: Rate limited
        kind: shell
        argv: ["true"]
        rate_limit: 2/minute
    """
)


@dataclass
class Cluster:
    database_url: str
    environ: dict[str, str]
    folder: Path
    token: str
    a: Replica
    b: Replica


@pytest.fixture(scope="module")
def cluster(shared_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("replicas")
    catalogue = folder / "commands.yaml"
    catalogue.write_text(CATALOGUE)
    token = admin_token(shared_database, folder)
    environ = replica_environ(shared_database, catalogue)
    started: list[Replica] = []
    try:
        started.append(start_replica("a", environ, folder, token))
        started.append(start_replica("b", environ, folder, token))
        yield Cluster(shared_database, environ, folder, token, started[0], started[1])
    finally:
        for replica in started:
            replica.kill()


def started_id(response: requests.Response) -> str:
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_running(replica: Replica, run_id: str) -> None:
    wait_until(lambda: replica.run(run_id)["status"] == "running", 10)


@pytest.mark.slow
def test_a_run_on_a_is_fetched_long_polled_and_streamed_through_b(cluster: Cluster) -> None:
    run_id = started_id(cluster.a.start_run("nap", seconds=1.5))
    assert cluster.b.run(run_id)["status"] in ("queued", "running")

    events: list[tuple[str, Any]] = []

    def stream() -> None:
        response = cluster.b.request("GET", f"/api/v1/runs/{run_id}/stream", stream=True)
        assert response.status_code == 200
        name = None
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
                if name == "end":
                    return

    streamer = threading.Thread(target=stream)
    streamer.start()
    polled = cluster.b.run(run_id, wait=30)  # B is idle: only a notification from A can wake it
    woke_at = time.time()
    streamer.join(10)

    assert polled["status"] == "succeeded"
    assert polled["output"] == "begin\nend\n"
    latency = woke_at - finished_at(polled)
    print(f"cross-replica long-poll wake latency: {latency * 1000:.1f} ms")
    assert latency < 0.5
    names = [name for name, _ in events]
    assert names[-1] == "end" and events[-1][1]["status"] == "succeeded"
    assert "".join(data["text"] for name, data in events if name == "output") == "begin\nend\n"
    assert run_events(cluster.database_url, run_id) == ["run.started", "run.finished"]


@pytest.mark.slow
def test_a_cancel_through_b_reaches_the_run_on_a_at_once(cluster: Cluster) -> None:
    run_id = started_id(cluster.a.start_run("nap", seconds=30))
    wait_running(cluster.b, run_id)
    time.sleep(0.3)  # the shell is up and A's next heartbeat is somewhere within the coming second
    asked = time.time()
    response = cluster.b.request("POST", f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 202, response.text
    run = cluster.b.run(run_id, wait=10)
    assert run["status"] == "cancelled"
    took = finished_at(run) - asked
    print(f"cancel through B ended the run on A after {took * 1000:.1f} ms (heartbeat {HEARTBEAT}s)")
    assert took < 0.5 * HEARTBEAT
    assert run_events(cluster.database_url, run_id) == ["run.started", "run.cancel_requested", "run.finished"]


@pytest.mark.slow
def test_command_concurrency_and_rate_limits_hold_across_replicas(cluster: Cluster) -> None:
    run_id = started_id(cluster.a.start_run("solo"))
    try:
        refused = cluster.b.start_run("solo")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "conflict"
    finally:
        cluster.b.request("POST", f"/api/v1/runs/{run_id}/cancel")
    assert cluster.a.run(run_id, wait=10)["status"] == "cancelled"

    assert cluster.a.start_run(LIMITED).status_code in (200, 202)
    assert cluster.b.start_run(LIMITED).status_code in (200, 202)
    limited = cluster.a.start_run(LIMITED)
    assert limited.status_code == 429, limited.text
    assert cluster.b.start_run(LIMITED).status_code == 429


@pytest.mark.slow
def test_the_audit_chain_stays_linear_under_concurrent_runs_through_both(cluster: Cluster) -> None:
    results: list[tuple[int, str]] = []

    def client(replica: Replica) -> None:
        for _ in range(4):
            response = replica.request("POST", "/api/v1/commands/quick/runs", json={"params": {}, "wait": 10})
            results.append((response.status_code, response.json().get("id", "")))

    threads = [threading.Thread(target=client, args=(replica,)) for replica in (cluster.a, cluster.b) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert [status for status, _ in results] == [200] * 24, results
    for _, run_id in results:
        assert run_events(cluster.database_url, run_id) == ["run.started", "run.finished"]
    verified = cluster.b.request("GET", "/api/v1/audit/verify")
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True
    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.connect() as connection:
            seqs = [row.seq for row in connection.execute(sa.text("SELECT seq FROM audit_events ORDER BY seq"))]
    finally:
        engine.dispose()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no fork: one line


@pytest.mark.slow
def test_a_replica_killed_mid_run_has_its_run_marked_lost_by_another(cluster: Cluster) -> None:
    doomed = start_replica("c", cluster.environ, cluster.folder, cluster.token)
    try:
        run_id = started_id(doomed.start_run("nap", seconds=30))
        wait_running(cluster.b, run_id)
    finally:
        doomed.kill()
    killed = time.monotonic()
    run = wait_until(lambda: (view := cluster.b.run(run_id))["status"] == "lost" and view, 3 * HEARTBEAT + 3)
    print(f"run of the killed replica marked lost after {time.monotonic() - killed:.2f}s")
    assert run["error"]
    assert run_events(cluster.database_url, run_id) == ["run.started", "run.finished"]
