"""Notifications through the outbox, against real receivers: a signature-checking HTTP server that goes down
and comes back, a Slack-style one, a real SMTP server.

Runs are real (``runs.start``, a real process), the outbox rows are written by
their end, and the worker's passes (``DeliveryWorker.run_pass``) or its thread
send them.  Nothing of the protocols is mocked.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from gateway import deliveries, runs
from gateway.access.policy import SCHEDULER
from gateway.api.streams import wait_for_finish
from gateway.db.models import AuditEvent
from gateway.db.outbox import Delivery
from gateway.db.units import write_connection
from gateway.deliveries.retries import RetryPolicy
from gateway.identity import accounts
from gateway.platform import metrics
from gateway.platform.extensions import db
from gateway.schedules import Scheduler
from tests.conftest import csrf_token_from, seed_session
from tests.receivers import HttpReceiver, SmtpReceiver, VerifyingWebhook, tls_authority
from tests.test_replicas import wait_until

# The outbox is database semantics (one commit with its cause, claims, leases): those tests carry
# both_engines; what is about rendering and the receivers runs on SQLite only.
both_engines = pytest.mark.both_engines

SECRET = "hook-signing-secret-0123456789"
HOSTILE = "$(touch {marker}) {{{{7*7}}}} <script>alert(1)</script> <!channel> & `x` ```end```"


def catalogue(tmp_path: Path, on: list[str] | None = None, mail: bool = False) -> Path:
    """Commands that notify ``hook`` (a webhook), ``on-change`` and ``chat`` (Slack); ``mail`` adds an email one."""
    marker = tmp_path / "pwned"
    notify_hostile = ["hook", "chat", *(["mail"] if mail else [])]
    document = {
        "commands": [
            {"name": "ok", "title": "All good", "kind": "shell", "argv": ["echo", "fine"], "notify": ["hook"]},
            {"name": "broken", "title": "Broken report", "kind": "shell",
             "argv": ["sh", "-c", "echo about to fail; exit 3"], "notify": ["hook"]},
            {"name": "quiet", "title": "Nobody listens", "kind": "shell", "argv": ["echo", "quiet"]},
            {"name": "reader", "title": "Reads a file", "kind": "shell", "argv": ["cat", str(tmp_path / "state.txt")],
             "notify": ["on-change"]},
            {"name": "hostile", "title": "Hostile output", "kind": "shell",
             "argv": ["printf", "%s", HOSTILE.format(marker=marker)], "notify": notify_hostile},
        ],
        "schedules": [{"name": "nightly", "command": "quiet", "cron": "0 3 * * *", "notify": ["hook"]}],
        "notifications": [
            {"name": "hook", "kind": "webhook", "url_env": "TEST_HOOK_URL", "secret_env": "TEST_HOOK_SECRET",
             "on": on or ["succeeded", "failed"], "timeout": 2},
            {"name": "on-change", "kind": "webhook", "url_env": "TEST_HOOK_URL", "secret_env": "TEST_HOOK_SECRET",
             "on": ["changed"]},
            {"name": "chat", "kind": "slack", "url_env": "TEST_SLACK_URL", "on": ["succeeded"]},
            *([{"name": "mail", "kind": "email", "to": ["oncall@example.com"], "on": ["succeeded"]}] if mail else []),
        ],
    }  # fmt: skip
    path = tmp_path / "commands.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def hook(monkeypatch):
    """The signature-checking webhook receiver, up; its URL and secret in the variables the catalogue names."""
    checker = VerifyingWebhook(secret=SECRET.encode())
    receiver = HttpReceiver(responder=checker).start()
    receiver.checker = checker  # type: ignore[attr-defined]
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url + "/hook")
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    yield receiver
    receiver.stop()


@pytest.fixture
def chat(monkeypatch):
    receiver = HttpReceiver().start()
    monkeypatch.setenv("TEST_SLACK_URL", receiver.url + "/services/T0/B0/secretpath")
    yield receiver
    receiver.stop()


@pytest.fixture
def notifying_app(make_app, tmp_path, hook, chat):
    return make_app(GATEWAY_COMMANDS_FILE=catalogue(tmp_path), DELIVERY_RETRY_SECONDS=1)


def run(name: str, params: dict | None = None, caller=None) -> str:
    """Start ``name`` and wait for its end; its id."""
    started = runs.start(name, params or {}, caller or runs.Caller(SCHEDULER, None))
    finished = wait_for_finish(started.run.id, 20.0, started.version)
    assert finished is not None and finished.status not in runs.LIVE
    db.session.remove()
    return started.run.id


def rows() -> list:
    """The outbox as committed now: plain rows (column values), oldest first."""
    db.session.rollback()
    table = Delivery.__table__
    return list(db.session.execute(select(table).order_by(table.c.created_at, table.c.id)))


def ledger(*names: str) -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event.in_(names)).order_by(AuditEvent.seq)))


# --- one delivery, end to end ---------------------------------------------------------------


@both_engines
def test_a_run_end_enqueues_in_its_commit_and_the_worker_sends_it_signed_holding_nothing(notifying_app, hook):
    pool_in_use: list[int] = []
    checker = hook.checker
    with notifying_app.app_context():
        pool = db.engine.pool

    def responder(request):
        pool_in_use.append(pool.checkedout())  # the gateway's connections in use while it talks to us
        return checker(request)

    hook.responder = responder
    with notifying_app.app_context():
        run_id = run("broken")
        [row] = rows()
        assert (row.status, row.destination, row.kind, row.event, row.run_id) == (
            "pending", "hook", "webhook", "run.finished", run_id,
        )  # fmt: skip
        assert hook.received == []  # enqueued with the run's end; nothing sent by the commit itself
        worker = deliveries.get_worker(notifying_app)
        worker.run_pass()
        [row] = rows()
        assert row.status == "delivered" and row.attempts == 1 and row.delivered_at is not None
    assert pool_in_use == [0]  # no transaction, no pooled connection held during the send
    [request] = hook.received
    assert checker.refused == 0 and checker.ids() == [row.id]  # signature, timestamp and id all checked
    assert request.headers["X-Gateway-Delivery"] == row.id
    body = json.loads(request.body)
    assert set(body) == {"id", "event", "run", "excerpt", "schedule"}
    assert body["event"] == "run.finished" and body["schedule"] is None
    assert body["run"]["id"] == run_id and body["run"]["status"] == "failed" and body["run"]["exit_code"] == 3
    assert "output" not in body["run"]
    assert body["excerpt"] == "about to fail\n"


def test_an_outcome_not_named_in_on_enqueues_nothing(make_app, tmp_path, hook, chat):
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue(tmp_path, on=["failed"]))
    with app.app_context():
        run("ok")  # succeeded; hook is on [failed] only
        run("quiet")  # no notify at all
        assert rows() == []
        run("broken")
        assert [row.destination for row in rows()] == ["hook"]


def test_a_schedules_notify_covers_its_runs(notifying_app, hook):
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 12, 14, 2, 59, tzinfo=UTC)
    scheduler = Scheduler(notifying_app, clock=lambda: start)
    with notifying_app.app_context():
        scheduler.tick()  # first sight: counts from now
        scheduler.clock = lambda: start + timedelta(minutes=1, seconds=1)
        scheduler.tick()  # 03:00 is due: quiet runs as system:scheduler
        run_id = wait_until(lambda: rows() and rows()[0].run_id, 15)
        assert wait_for_finish(run_id, 20.0) is not None
        deliveries.get_worker(notifying_app).run_pass()
    [body] = hook.checker.accepted
    assert body["schedule"] == "nightly" and body["run"]["user"] == "system:scheduler"


# --- reliability ---------------------------------------------------------------------------


@both_engines
def test_a_receiver_that_is_down_gets_every_notification_once_when_it_is_back(notifying_app, hook):
    hook.stop()  # connections are refused
    with notifying_app.app_context():
        run_ids = [run("broken") for _ in range(3)]
        worker = deliveries.get_worker(notifying_app)
        worker.run_pass()
        waiting = rows()
        assert {row.status for row in waiting} == {"failed"} and {row.last_error for row in waiting} == {"connect"}
        assert all(row.next_attempt_at > row.last_attempt_at for row in waiting)  # backed off, not due at once
        failed = ledger("delivery.failed")
        assert sorted(event.run_id for event in failed) == sorted(run_ids)
        assert {event.outcome for event in failed} == {"connect"} and {e.actor_name for e in failed} == {
            "system:deliveries"
        }
        ids = [row.id for row in waiting]
        # Back on the same port; the first answer for one delivery is lost after it was processed.
        hook.checker.fail_first = {ids[0]}
        hook.start()
        worker.start()  # the real thread now: it sleeps until the retries are due, then sends
        try:
            wait_until(lambda: {row.status for row in rows()} == {"delivered"}, seconds=20)
        finally:
            worker.stop()
        assert ledger("delivery.dead") == [] and len(ledger("delivery.failed")) == 3  # once per delivery
    assert sorted(hook.checker.ids()) == sorted(ids)  # every notification arrived, each accepted once
    assert hook.checker.duplicates == [ids[0]]  # sent again after the lost answer: refused as seen
    assert hook.checker.refused == 0
    scraped = notifying_app.test_client().get("/metrics").get_data(as_text=True)
    assert 'gateway_delivery_attempts_total{destination="hook",result="connect"}' in scraped
    assert 'gateway_delivery_attempts_total{destination="hook",result="delivered"}' in scraped


@both_engines
def test_the_last_attempt_makes_a_delivery_dead_and_an_admin_retry_sends_it(make_app, tmp_path, hook, chat, users):
    hook.responder = lambda _request: (500, {}, b"broken receiver")
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue(tmp_path), DELIVERY_MAX_ATTEMPTS=1)
    with app.app_context():
        run_id = run("broken")
        deliveries.get_worker(app).run_pass()
        [row] = rows()
        assert (row.status, row.attempts, row.last_error, row.last_status) == ("dead", 1, "status", 500)
        assert [event.event for event in ledger("delivery.failed", "delivery.dead")] == [
            "delivery.failed",
            "delivery.dead",
        ]
    client = app.test_client()
    seed_session(app, client, users["admin"].id)
    page = client.get("/admin/deliveries")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and f'id="delivery-{row.id}"' in text and 'data-status="dead"' in text
    for secret in (SECRET, hook.url, "about to fail"):  # no secret, no URL, no output on the page
        assert secret not in text
    assert 'href="/admin/deliveries"' in text  # the admin nav links it
    hook.responder = hook.checker
    csrf = csrf_token_from(text)
    answer = client.post(f"/admin/deliveries/{row.id}/retry", data={"csrf_token": csrf})
    assert answer.status_code == 303
    with app.app_context():
        [retried] = ledger("admin.delivery_retried")
        assert retried.actor_name == "admin" and retried.run_id == run_id
        assert retried.detail["delivery"] == row.id and retried.detail["was"] == "dead"
        deliveries.get_worker(app).run_pass()
        assert [r.status for r in rows()] == ["delivered"]
    assert hook.checker.ids() == [row.id]
    assert client.post(f"/admin/deliveries/{row.id}/retry", data={"csrf_token": csrf}).status_code == 303  # flash
    assert client.post(f"/admin/deliveries/{run_id}/retry", data={"csrf_token": csrf}).status_code == 404


@both_engines
def test_nothing_is_sent_for_a_cause_that_rolled_back_and_an_end_is_notified_once(notifying_app, hook):
    from gateway.runners.base import Outcome
    from gateway.runs.ending import finish
    from gateway.runs.model import Job

    with notifying_app.app_context():
        run_id = run("broken")
        [first] = rows()
        with pytest.raises(RuntimeError), write_connection() as tx:  # a cause whose unit fails after the enqueue
            deliveries.enqueue(tx, ["hook"], "run.finished", {"run": {"id": run_id}}, run_id=run_id)
            raise RuntimeError("the cause fails after its notification was added")
        job = Job(run_id=run_id, command=None, username="", queued=False, schedule_known=False)  # type: ignore[arg-type]
        assert not finish(job, Outcome(status="lost"))  # the run has its end already: no second end, no delivery
        assert [row.id for row in rows()] == [first.id]
        deliveries.get_worker(notifying_app).run_pass()
    assert hook.checker.ids() == [first.id]


@both_engines
def test_changed_means_another_outcome_or_digest_than_the_previous_run_with_the_same_params(notifying_app, tmp_path):
    state = tmp_path / "state.txt"
    state.write_text("green\n")
    with notifying_app.app_context():
        run("reader")  # the first run: not a change
        run("reader")  # the same output
        assert [row.destination for row in rows() if row.destination == "on-change"] == []
        state.write_text("red\n")
        changed = run("reader")  # another digest
        run("reader")  # the same again
        state.unlink()
        failed = run("reader")  # another outcome
        assert [row.run_id for row in rows() if row.destination == "on-change"] == [changed, failed]


# --- output is data -------------------------------------------------------------------------


def test_hostile_output_reaches_every_receiver_as_inert_text(make_app, tmp_path, hook, chat, monkeypatch):
    authority = tls_authority(tmp_path)
    smtp = SmtpReceiver("starttls", tls=authority.server_context, credentials=("gateway", "mail-password")).start()
    path = catalogue(tmp_path, mail=True)
    app = make_app(
        GATEWAY_COMMANDS_FILE=path, SMTP_URL=smtp.url(), SMTP_USERNAME="gateway", SMTP_PASSWORD="mail-password",
        OUTBOUND_CA_FILE=authority.ca_file, SMTP_FROM="gateway@example.com",
    )  # fmt: skip
    marker = tmp_path / "pwned"
    hostile = HOSTILE.format(marker=marker)
    try:
        with app.app_context():
            run("hostile")
            deliveries.get_worker(app).run_pass()
            assert {row.status for row in rows()} == {"delivered"}
    finally:
        smtp.stop()
    assert not marker.exists()  # never a shell
    [body] = hook.checker.accepted
    assert body["excerpt"] == hostile  # data, byte for byte: no template evaluated ({{7*7}} stays)
    [slack] = chat.received
    text = json.loads(slack.body)["text"]
    assert "<!channel>" not in text and "<script>" not in text and "&lt;!channel&gt;" in text
    assert "```end```" not in text and text.count("```") == 2  # the code block cannot be closed from inside
    block = text.split("```")[1]  # the output excerpt; ids and paths elsewhere may hold the digits 49
    assert "{{7*7}}" in block and "49" not in block.replace(str(marker), "")
    [mail] = smtp.mails
    assert mail.over_tls and mail.login == "gateway" and mail.recipients == ["oncall@example.com"]
    message = mail.message()
    assert message["Subject"] == "Hostile output: succeeded"
    assert message["X-Gateway-Delivery"] == rows_after(app)[0]
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert hostile in plain
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "{{7*7}}" in html


def rows_after(app) -> list[str]:
    with app.app_context():
        return [row.id for row in rows() if row.destination == "mail"]


def test_a_param_cannot_reach_the_mail_headers(make_app, tmp_path, monkeypatch):
    smtp = SmtpReceiver("plain").start()
    path = tmp_path / "commands.yaml"
    path.write_text(
        textwrap.dedent(
            """
            commands:
              - name: greet
                title: Greeting
                kind: shell
                argv: ["echo", "{who}"]
                params:
                  who: {type: string, max_length: 200, pattern: '(?s).*'}  # a reviewed pattern admits line breaks
                notify: [mail]
            notifications:
              - name: mail
                kind: email
                to: [oncall@example.com]
                on: [succeeded]
            """
        )
    )
    app = make_app(GATEWAY_COMMANDS_FILE=path, SMTP_URL=smtp.url(query="starttls=off"))
    try:
        with app.app_context():
            admin = accounts.create_user("boss", "boss-password-123", is_admin=True)
            run("greet", {"who": "x\r\nBcc: thief@example.org\r\nSubject: pwned"}, runs.Caller(admin, "127.0.0.1"))
            deliveries.get_worker(app).run_pass()
    finally:
        smtp.stop()
    [mail] = smtp.mails
    assert mail.recipients == ["oncall@example.com"] and not mail.over_tls  # a local relay, as configured
    message = mail.message()
    assert message["Subject"] == "Greeting: succeeded" and message["Bcc"] is None
    assert len(message.get_all("Subject")) == 1


# --- the pieces -----------------------------------------------------------------------------


def test_retries_back_off_exponentially_with_jitter_up_to_the_cap():
    policy = RetryPolicy(max_attempts=5, first_delay=10, max_delay=60)
    for attempts, ceiling in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        delays = [policy.delay(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 150  # jittered: failures together do not come back together
    assert not policy.gives_up(4) and policy.gives_up(5)


def test_every_attempt_result_is_a_bounded_metric_label():
    assert set(deliveries.RESULTS) == metrics.DELIVERY_RESULTS
    assert metrics.destination_label(None) == "other"


def test_a_new_delivery_wakes_the_worker_at_once(notifying_app, hook):
    worker = deliveries.get_worker(notifying_app)
    worker.start()  # it goes to sleep: nothing is due
    try:
        time.sleep(0.3)
        with notifying_app.app_context():
            started = time.monotonic()
            run("broken")
            wait_until(lambda: hook.checker.ids(), seconds=10)
            assert time.monotonic() - started < 5  # woken by the commit, not by the 60 s look
    finally:
        worker.stop()


def test_readiness_warns_about_a_notification_that_cannot_be_sent(make_app, tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_HOOK_URL", raising=False)
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("TEST_SLACK_URL", "http://127.0.0.1:9/x")
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue(tmp_path))
    with app.app_context():
        assert app.extensions["gateway.catalogue"].catalogue.unconfigured_notifications() == ["hook", "on-change"]
    ready = app.test_client().get("/readyz").get_json()
    assert ready["status"] == "warn" and ready["checks"]["catalogue:loaded"] == [{"status": "warn"}]
    with app.app_context():
        run("broken")  # still runs; its notification waits, failing as unconfigured
        deliveries.get_worker(app).run_pass()
        [row] = rows()
        assert (row.status, row.last_error) == ("failed", "unconfigured")


def test_the_worker_thread_stops_promptly(notifying_app):
    worker = deliveries.get_worker(notifying_app)
    worker.start()
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 3
    assert not any(thread.name == "gateway-deliveries" and thread.is_alive() for thread in threading.enumerate())


def test_the_readmes_receiver_accepts_a_delivery_once_and_refuses_a_forgery(make_app, tmp_path, monkeypatch):
    import http.server
    import re as regex
    import urllib.error
    import urllib.request

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [code] = regex.findall(r"```python\n(import hashlib, hmac, json, time, http.server\n.*?)```", readme, regex.S)
    assert len(code.strip().splitlines()) == 10
    namespace: dict = {}
    exec(code.replace('b"the OPS_WEBHOOK_SECRET value"', repr(SECRET.encode())).rsplit("\n", 2)[0], namespace)
    server = http.server.HTTPServer(("127.0.0.1", 0), namespace["Hook"])
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    monkeypatch.setenv("TEST_HOOK_URL", url)
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("TEST_SLACK_URL", url)
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue(tmp_path))
    try:
        with app.app_context():
            run("broken")
            deliveries.get_worker(app).run_pass()
            [row] = rows()
            assert row.status == "delivered"
        assert namespace["seen"] == {row.id}
        forged = urllib.request.Request(url, data=b'{"id": "x"}', headers={"X-Gateway-Delivery": "x",
                                        "X-Gateway-Timestamp": str(int(time.time())), "X-Gateway-Signature": "sha256=00"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=5)
        assert refused.value.code == 401 and namespace["seen"] == {row.id}
    finally:
        server.shutdown()
        server.server_close()


# --- approvals tell through the same outbox -----------------------------------------------------


@both_engines
def test_an_approval_request_and_its_decision_are_told_through_the_outbox(make_app, tmp_path, hook):
    """``approval.notify`` to the approval's names at the request, ``approval.decided`` at the denial; inert, masked."""
    from gateway.identity import groups, tokens

    document = {
        "commands": [
            {"name": "purge", "title": "Purge a queue", "kind": "shell", "argv": ["echo", "purged"],
             "env": {"TOKEN": "{token}"}, "params": {"token": {"type": "string", "secret": True}},
             "approval": {"approvers": ["leads"], "notify": ["hook"]}},
        ],
        "notifications": [
            {"name": "hook", "kind": "webhook", "url_env": "TEST_HOOK_URL", "secret_env": "TEST_HOOK_SECRET",
             "on": ["failed"]},
        ],
    }  # fmt: skip
    path = tmp_path / "commands.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    app = make_app(GATEWAY_COMMANDS_FILE=path)
    with app.app_context():
        for name in ("staff", "lead"):
            accounts.create_user(name, f"{name}-password-123")
        groups.create_group("ops")
        groups.create_group("leads")
        groups.add_member("ops", "staff")
        groups.add_member("leads", "lead")
        groups.add_grant("ops", "purge")
        bearer = {
            name: {"Authorization": f"Bearer {tokens.create_token(accounts.get_user(name), name='t').secret}"}
            for name in ("staff", "lead")
        }
    client = app.test_client()
    asked = client.post("/api/v1/commands/purge/runs", json={"params": {"token": SECRET}}, headers=bearer["staff"])
    assert asked.status_code == 202, asked.get_data(as_text=True)
    run_id = asked.get_json()["id"]
    with app.app_context():
        [row] = rows()
        assert (row.event, row.destination, row.run_id, row.status) == ("approval.notify", "hook", run_id, "pending")
        deliveries.get_worker(app).run_pass()
    denied = client.post(f"/api/v1/runs/{run_id}/deny", json={"comment": "not today"}, headers=bearer["lead"])
    assert denied.status_code == 200, denied.get_data(as_text=True)
    with app.app_context():
        assert [(row.event, row.status) for row in rows()] == [
            ("approval.notify", "delivered"), ("approval.decided", "pending"),
        ]  # fmt: skip
        deliveries.get_worker(app).run_pass()
    bodies = [json.loads(request.body) for request in hook.received]
    assert [(body["event"], body["run"]["status"]) for body in bodies] == [
        ("approval.notify", "pending_approval"), ("approval.decided", "denied"),
    ]  # fmt: skip
    assert all(body["run"]["id"] == run_id and body["run"]["params"] == {"token": "***"} for body in bodies)
    assert hook.checker.refused == 0 and SECRET not in json.dumps(bodies)
