"""SIGTERM drains a serving gateway: not ready, no new runs, running ones finish or are cancelled, none left running.

Real processes on a fresh PostgreSQL database: a gunicorn replica (SIGTERM to
its master, as Kubernetes does) and the development server of
``manage.py serve``.  After the process has exited the database is the
witness: every run has a terminal state and exactly one ``run.finished``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from config import PROJECT_ROOT
from tests.conftest import create_pg_database, drop_pg_database, pg_url
from tests.test_replicas import (
    CATALOGUE,
    Replica,
    admin_token,
    finished_at,
    free_port,
    replica_environ,
    run_events,
    run_rows,
    start_replica,
    wait_until,
)

GRACE = 3


@pytest.fixture
def database(pg_template: str) -> Iterator[str]:
    name = create_pg_database(template=pg_template)
    yield pg_url(name)
    drop_pg_database(name)


@pytest.fixture
def setup(database: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(CATALOGUE)
    environ = replica_environ(database, catalogue, RUN_SHUTDOWN_GRACE_SECONDS=str(GRACE))
    return environ, admin_token(database, tmp_path)


def start_serve(environ: dict[str, str], folder: Path, token: str) -> Replica:
    """``manage.py serve`` in its own session, ready to answer."""
    port = free_port()
    log = folder / "serve.log"
    env = {**environ, "GATEWAY_INSTANCE_PATH": str(folder / "instance-serve")}
    argv = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    replica = Replica(name="serve", base=f"http://127.0.0.1:{port}", process=process, log=log, token=token)

    def ready() -> bool:
        assert process.poll() is None, replica.output()
        try:
            return requests.get(replica.base + "/readyz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(ready, 30, interval=0.1)
    except BaseException:
        replica.kill()
        raise
    return replica


def drain_and_check(replica: Replica, database_url: str) -> None:
    """Start a short and a long run, SIGTERM the server, and check what the drain promises."""
    short = replica.start_run("nap", seconds=1.5)
    long = replica.start_run("nap", seconds=30)
    assert short.status_code == long.status_code == 202, (short.text, long.text)
    short_id, long_id = short.json()["id"], long.json()["id"]
    wait_until(lambda: replica.run(long_id)["status"] == "running", 10)

    os.kill(replica.process.pid, signal.SIGTERM)
    terminated = time.time()
    # While draining the process still answers: not ready, and refuses new runs.
    wait_until(lambda: requests.get(replica.base + "/readyz", timeout=2).status_code == 503, 2)
    refused = replica.start_run("quick")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "unavailable"
    assert replica.run(long_id)["status"] == "running"  # the grace period is honoured

    replica.process.wait(timeout=GRACE + 15)
    statuses = run_rows(database_url)
    assert statuses[short_id] == "succeeded"
    assert statuses[long_id] == "cancelled"
    assert "running" not in statuses.values() and "queued" not in statuses.values()
    for run_id in statuses:
        assert run_events(database_url, run_id).count("run.finished") == 1
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        ended = connection.execute(sa.text("SELECT finished_at FROM runs WHERE id = :id"), {"id": long_id}).scalar()
    engine.dispose()
    waited = finished_at({"finished_at": ended.isoformat()}) - terminated
    print(f"long run cancelled {waited:.2f}s after SIGTERM (grace {GRACE}s)")
    assert GRACE - 0.5 <= waited <= GRACE + 5


@pytest.mark.slow
@pytest.mark.postgres
def test_sigterm_drains_a_gunicorn_replica(setup: tuple[dict[str, str], str], database: str, tmp_path: Path) -> None:
    environ, token = setup
    replica = start_replica("drained", environ, tmp_path, token)
    try:
        drain_and_check(replica, database)
        assert replica.process.returncode == 0, replica.output()
    finally:
        replica.kill()


@pytest.mark.slow
@pytest.mark.postgres
def test_sigterm_drains_manage_py_serve(setup: tuple[dict[str, str], str], database: str, tmp_path: Path) -> None:
    environ, token = setup
    replica = start_serve(environ, tmp_path, token)
    try:
        drain_and_check(replica, database)
    finally:
        replica.kill()
