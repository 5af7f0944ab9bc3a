"""A worker killed with SIGKILL mid-run: its run becomes ``lost`` and nothing it started survives.

The worker is a real separate process running the engine on the same
database; the test process plays the next worker to start on this host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from config import PROJECT_ROOT
from gateway import audit, runs
from gateway.db.models import AuditEvent, Run
from gateway.platform.extensions import db
from gateway.runs.workers import get_executor
from tests.conftest import base_environ

pytestmark = pytest.mark.both_engines  # runs: leases and the reaper per engine

CATALOGUE = """
commands:
  - name: family
    title: A process with a background child
    kind: shell
    argv: ["sh", "-c", "sleep 300 & sleep 300"]
    timeout: 600
"""

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from gateway import create_app, runs
    from gateway.identity import accounts
    from gateway.platform.extensions import db
    from gateway.db.models import Run

    app = create_app()
    with app.app_context():
        user = accounts.create_user("worker", "worker-password-123", is_admin=True)
        run_id = runs.start("family", {}, runs.Caller(user=user, source_ip="127.0.0.1")).run.id
        for _ in range(100):
            db.session.rollback()
            pgid = db.session.scalar(db.select(Run.pgid).where(Run.id == run_id))
            if pgid:
                break
            time.sleep(0.05)
        print(json.dumps({"run_id": run_id, "pgid": pgid}), flush=True)
        time.sleep(600)
    """
)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.mark.slow
def test_a_killed_worker_leaves_no_process_and_its_run_is_lost_once(make_app, database_url, tmp_path):
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(CATALOGUE)
    environ = {
        **base_environ(database_url),
        "PATH": os.environ["PATH"],
        "GATEWAY_COMMANDS_FILE": str(catalogue),
        "RUN_HEARTBEAT_SECONDS": "1",
        "GATEWAY_INSTANCE_PATH": str(tmp_path / "worker-instance"),
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER], cwd=PROJECT_ROOT, env=environ, stdout=subprocess.PIPE, text=True
    )
    try:
        line = worker.stdout.readline()
        started = json.loads(line)
        run_id, pgid = started["run_id"], started["pgid"]
        assert pgid and len(group_members(pgid)) >= 2  # sh and its background sleep
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()

    # The direct child dies with its worker (parent-death signal); the background sleep may not.
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue, RUN_HEARTBEAT_SECONDS=1)
    with app.app_context():
        time.sleep(3.5)  # the dead worker's lease (3 heartbeats) runs out
        executor = get_executor(app)  # a worker starting on this host cleans up after the dead one
        deadline = time.monotonic() + 5
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(pgid) == []

        executor.beat_once()  # the reaper
        db.session.rollback()
        run = db.session.get(Run, run_id)
        assert run.status == "lost"
        finished = db.session.scalars(
            select(AuditEvent).where(AuditEvent.run_id == run_id, AuditEvent.event == "run.finished")
        ).all()
        assert [event.outcome for event in finished] == ["lost"]
        assert runs.reap_expired() == []
        assert audit.verify(db.session, audit.Keyring.from_config(app.config)).ok
