"""The outbox across processes: a sender killed mid-delivery, and two replicas sharing one outbox.

Each gateway here is a real separate process on the same database (the test
process plays the one that starts after a crash); the receiver is a real
HTTP server that checks signatures and counts each delivery id.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from config import PROJECT_ROOT
from gateway import deliveries
from gateway.db.units import write_connection
from tests.conftest import base_environ
from tests.receivers import HttpReceiver, VerifyingWebhook
from tests.test_replicas import wait_until

pytestmark = pytest.mark.slow

SECRET = "process-test-signing-secret"
CATALOGUE = textwrap.dedent(
    """
    commands:
      - name: broken
        title: Broken report
        kind: shell
        argv: ["sh", "-c", "echo failing; exit 1"]
        notify: [hook]
    notifications:
      - name: hook
        kind: webhook
        url_env: TEST_HOOK_URL
        secret_env: TEST_HOOK_SECRET
        on: [failed]
        timeout: 30
    """
)

# A gateway process that ends one run (its delivery enqueued with the end), lets its worker take it, and waits.
SENDER = textwrap.dedent(
    """
    import json, time
    from gateway import create_app, runs
    from gateway.access.policy import SCHEDULER
    from gateway.api.streams import wait_for_finish
    from gateway.deliveries import start_worker

    app = create_app()
    with app.app_context():
        start_worker(app)
        started = runs.start("broken", {}, runs.Caller(SCHEDULER, None))
        wait_for_finish(started.run.id, 20, started.version)
        print(json.dumps({"run_id": started.run.id}), flush=True)
    time.sleep(600)
    """
)

# A replica as far as the outbox goes: its NOTIFY listener and its delivery worker.
REPLICA = textwrap.dedent(
    """
    import logging, sys, time
    from gateway import create_app
    from gateway.deliveries import start_worker
    from gateway.platform import notify

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    app = create_app()
    listener = notify.start_listener(app)
    start_worker(app)
    listener.connected.wait(10)
    print("ready", flush=True)
    time.sleep(600)
    """
)


def process_environ(database_url: str, tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(CATALOGUE)
    return base_environ(
        database_url, PATH=os.environ["PATH"], GATEWAY_COMMANDS_FILE=str(catalogue),
        GATEWAY_INSTANCE_PATH=str(tmp_path / f"instance-{name}"), TEST_HOOK_SECRET=SECRET, **extra,
    )  # fmt: skip


def outbox(database_url: str) -> list[dict]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT id, status, attempts, locked_until FROM deliveries ORDER BY created_at")
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def test_a_sender_killed_between_the_claim_and_the_send_delivers_once_after_its_lease(
    make_app, database_url, tmp_path, monkeypatch
):
    # The receiver's port first holds a listener that never accepts: the killed sender's request
    # sits unread in its backlog, so the receiver that takes the port later never sees it.
    blackhole = socket.socket()
    blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)
    port = blackhole.getsockname()[1]
    url = f"http://localhost:{port}/hook"
    environ = process_environ(database_url, tmp_path, "sender", TEST_HOOK_URL=url, DELIVERY_LEASE_SECONDS="3")
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER], cwd=PROJECT_ROOT, env=environ, stdout=subprocess.PIPE, text=True
    )
    try:
        run_id = json.loads(sender.stdout.readline())["run_id"]
        [claimed] = wait_until(lambda: [r for r in outbox(database_url) if r["locked_until"] is not None], 10)
        assert claimed["attempts"] == 1 and claimed["status"] == "pending"  # claimed, the send under way
        sender.send_signal(signal.SIGKILL)
        sender.wait(timeout=10)
    finally:
        if sender.poll() is None:
            sender.kill()
        blackhole.close()

    checker = VerifyingWebhook(secret=SECRET.encode())
    receiver = HttpReceiver(responder=checker, port=port).start()
    try:
        monkeypatch.setenv("TEST_HOOK_URL", url)
        monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
        app = make_app(GATEWAY_COMMANDS_FILE=tmp_path / "commands.yaml", DELIVERY_LEASE_SECONDS=3)
        worker = deliveries.get_worker(app)  # the gateway, restarted
        with app.app_context():
            worker.run_pass()
            assert receiver.received == []  # the dead sender's lease still holds it
            wait_until(lambda: (worker.run_pass(), checker.ids())[1], 10)  # due again once the lease ran out
            worker.run_pass()
    finally:
        receiver.stop()
    [row] = outbox(database_url)
    assert checker.ids() == [row["id"]] and checker.duplicates == []  # delivered once
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert [document["run"]["id"] for document in checker.accepted] == [run_id]


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_two_replicas_sharing_the_outbox_send_each_delivery_once(make_app, database_url, tmp_path, monkeypatch):
    checker = VerifyingWebhook(secret=SECRET.encode())
    receiver = HttpReceiver(responder=checker, delay_seconds=0.02).start()
    url = receiver.url + "/hook"
    replicas = []
    try:
        for name in ("a", "b"):
            environ = process_environ(database_url, tmp_path, name, TEST_HOOK_URL=url)
            log = (tmp_path / f"{name}.log").open("w")
            replicas.append(
                (subprocess.Popen([sys.executable, "-c", REPLICA], cwd=PROJECT_ROOT, env=environ,
                                  stdout=subprocess.PIPE, stderr=log, text=True), tmp_path / f"{name}.log")
            )  # fmt: skip
        for process, _ in replicas:
            assert process.stdout.readline().strip() == "ready"
        monkeypatch.setenv("TEST_HOOK_URL", url)
        monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
        app = make_app(GATEWAY_COMMANDS_FILE=tmp_path / "commands.yaml")  # enqueues only: no worker here
        with app.app_context():
            ids = []
            for cause in range(5):  # five causes committing, four notifications each
                with write_connection() as tx:
                    payload = {"run": {"id": f"cause-{cause}", "status": "failed"}, "excerpt": "", "schedule": None}
                    ids += deliveries.enqueue(tx, ["hook"] * 4, "run.finished", payload)
        wait_until(lambda: len(checker.ids()) == len(ids), 20)  # woken by NOTIFY: no 60 s poll in between
        time.sleep(0.5)  # anything sent twice would arrive now
    finally:
        for process, _ in replicas:
            process.kill()
            process.wait(timeout=10)
        receiver.stop()
    assert sorted(checker.ids()) == sorted(ids) and checker.duplicates == [] and checker.refused == 0
    sent_by = [set(re.findall(r"delivery (\S+) \(run\.finished\) delivered", log.read_text())) for _, log in replicas]
    assert sent_by[0] and sent_by[1], "both replicas should have taken a share"
    assert sent_by[0] | sent_by[1] == set(ids) and not sent_by[0] & sent_by[1]
    assert {row["status"] for row in outbox(database_url)} == {"delivered"}
