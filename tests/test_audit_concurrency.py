"""One linear audit chain under concurrent writers, on SQLite and PostgreSQL.

``seq`` is assigned under the write lock (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL ``pg_advisory_xact_lock``), so threads in one process and separate
processes sharing the database must produce seq 1..N with no gaps, no
duplicates and every ``prev_hash`` pointing at the row before it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import audit
from gateway.db.units import write_connection, write_transaction
from tests.conftest import base_environ
from tests.test_audit_chain import GENESIS, ledger_rows, verify

pytestmark = pytest.mark.both_engines  # the ledger under concurrent writers: each engine's locking

PROJECT = Path(__file__).resolve().parents[1]

WORKER_SCRIPT = """
import sys

from gateway import audit, create_app
from gateway.platform.extensions import db

worker, count, instance = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
app = create_app(instance_path=instance)
with app.app_context():
    db.engine.connect().close()
print("ready", flush=True)
sys.stdin.readline()  # everyone starts writing at once
for index in range(count):
    with app.app_context():
        audit.record("test.concurrent", detail={"worker": worker, "index": index})
print("done", flush=True)
"""


def assert_one_linear_chain(app: Flask, workers: int, per_worker: int) -> None:
    rows = ledger_rows(app)
    total = workers * per_worker
    assert [row["seq"] for row in rows] == list(range(1, total + 1))
    assert rows[0]["prev_hash"] == GENESIS
    assert all(after["prev_hash"] == before["hash"] for before, after in pairwise(rows))
    for worker in range(workers):
        indices = [row["detail"]["index"] for row in rows if row["detail"]["worker"] == worker]
        assert indices == list(range(per_worker)), f"worker {worker} lost or reordered events"
    result = verify(app)
    assert result.ok, result.reason
    assert result.checked == total
    assert result.head == {"seq": total, "hash": rows[-1]["hash"]}


@pytest.mark.parametrize("unit", [write_transaction, write_connection], ids=["session", "connection"])
def test_a_write_unit_takes_the_write_lock_before_reading(
    app: Flask, backend: str, database_url: str, unit: Callable[[], Any]
) -> None:
    """Another writer is shut out for the whole unit, from its first statement on (both kinds of unit)."""
    if backend == "sqlite":
        path = sa.make_url(database_url).database
        with app.app_context(), unit():
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
        return

    engine = sa.create_engine(database_url)
    try_lock = sa.text("SELECT pg_try_advisory_xact_lock(:key)")
    try:
        with app.app_context(), unit() as tx:
            audit.append("test.locked", session=tx)
            with engine.connect() as other:
                assert other.execute(try_lock, {"key": audit.PG_LOCK_KEY}).scalar_one() is False
        with engine.connect() as other:
            assert other.execute(try_lock, {"key": audit.PG_LOCK_KEY}).scalar_one() is True
    finally:
        engine.dispose()


def test_threads_keep_one_linear_chain(app: Flask) -> None:
    threads_count, per_thread = 8, 25
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                for index in range(per_thread):
                    audit.record("test.concurrent", detail={"worker": number, "index": index})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    assert errors == []
    assert_one_linear_chain(app, threads_count, per_thread)


@pytest.mark.slow
def test_processes_keep_one_linear_chain(app: Flask, database_url: str, tmp_path: Path) -> None:
    processes_count, per_process = 4, 25
    environ = {**base_environ(database_url), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, str(number), str(per_process), str(tmp_path / f"worker{number}")],
            cwd=PROJECT,
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(processes_count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready", process.stderr.read() if process.stderr else ""
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (stdout, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr
        assert stdout.strip() == "done"
    assert_one_linear_chain(app, processes_count, per_process)
