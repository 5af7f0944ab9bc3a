"""``/readyz`` fails, naming the check, when the executor is wedged; liveness gives it longer.

A real executor whose supervisor genuinely stalls: another connection holds
the database lock its lease renewal needs (SQLite: the write lock;
PostgreSQL: an exclusive lock on ``runs``), exactly as a stuck transaction
elsewhere would.  Nothing of ours is replaced.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import runs
from gateway.db.models import Run
from gateway.identity import accounts
from gateway.platform.extensions import db
from gateway.platform.lifecycle import drain
from gateway.runs.workers import get_executor
from tests.conftest import PASSWORDS
from tests.test_replicas import wait_until

pytestmark = pytest.mark.both_engines  # runs: the lease supervisor against a held write lock per engine

HEARTBEAT = 1


def probe(app: Flask, path: str) -> tuple[int, dict[str, str]]:
    response = app.test_client().get(path + "?verbose")
    body = json.loads(response.get_data(as_text=True))
    return response.status_code, {name: entries[0]["status"] for name, entries in body["checks"].items()}


@contextlib.contextmanager
def lock_held_against_the_supervisor(database_url: str) -> Iterator[None]:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    connection = engine.connect()
    try:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock every lease renewal takes first
        else:
            connection.begin()
            connection.exec_driver_sql("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        connection.rollback()
        connection.close()
        engine.dispose()


def test_a_stalled_supervisor_fails_readiness_first_and_recovers(make_app: Any, database_url: str) -> None:
    app = make_app(RUN_HEARTBEAT_SECONDS=HEARTBEAT)
    executor = get_executor(app)
    status, checks = probe(app, "/readyz")
    assert status == 200, checks
    assert checks["executor:supervisor"] == checks["executor:workers"] == "pass"

    with lock_held_against_the_supervisor(database_url):
        stalled = time.monotonic()
        wait_until(lambda: probe(app, "/readyz")[0] == 503, 3 * HEARTBEAT + 3, interval=0.1)
        took = time.monotonic() - stalled
        status, checks = probe(app, "/readyz")
        assert status == 503
        assert checks["executor:supervisor"] == "fail"
        assert {name for name, state in checks.items() if state == "fail"} == {"executor:supervisor"}, checks
        assert executor.supervisor_alive()  # the thread is there, only stuck: liveness does not restart yet
        assert probe(app, "/livez")[0] == 200
        print(f"readiness failed {took:.1f}s into the stall (heartbeat {HEARTBEAT}s)")

    wait_until(lambda: probe(app, "/readyz")[0] == 200, 3 * HEARTBEAT + 5, interval=0.1)


def test_a_dead_run_pool_fails_readiness(make_app: Any) -> None:
    app = make_app(RUN_HEARTBEAT_SECONDS=HEARTBEAT)
    executor = get_executor(app)
    executor.shutdown(grace=0)  # the pool is gone while the process would go on serving
    status, checks = probe(app, "/readyz")
    assert status == 503
    assert checks["executor:workers"] == "fail"
    assert checks["process:draining"] == "pass"  # not a drain: the pool itself is dead


def test_a_run_cancelled_by_the_shutdown_drain_says_so(make_app: Any, tmp_path: Path) -> None:
    """An operator reading a run the SIGTERM drain cancelled must learn that the gateway shut down."""
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text('commands:\n  - {name: long, title: L, kind: shell, argv: ["sleep", "30"], timeout: 60}\n')
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue, RUN_HEARTBEAT_SECONDS=HEARTBEAT)
    with app.app_context():
        admin = accounts.create_user("admin", PASSWORDS["admin"], is_admin=True)
        run_id = runs.start("long", {}, runs.Caller(user=admin, source_ip="127.0.0.1", user_agent="pytest")).run.id
        wait_until(lambda: db.session.get(Run, run_id, populate_existing=True).status == "running", 10)
        db.session.rollback()
    drain(app, grace=0)
    with app.app_context():
        run = db.session.get(Run, run_id)
        assert run.status == "cancelled"
        assert "shut down" in (run.error or ""), run.error
