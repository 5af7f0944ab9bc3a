"""Audit forwarding to a real HTTPS receiver (certificates from trustme), in process, on both engines.

What a SIEM sees: every event after the destination's start arrives once per
acknowledgement (a batch it refused with 503, or sent while it was down, comes
again; an acknowledged one never does), in ``seq`` order, each ``prev_hash``
equal to the previous ``hash``, the hashes those of the ledger that ``audit
verify`` passes.  Two processes on one database forward one batch at a time
and hand over on a clean stop.  A new destination starts at the head; pruning
refuses to cut past the slowest cursor unless forced, and says so in the
ledger; ``/metrics`` reports the lag by destination name.  The README's
continuity script is run against what the receiver got.

The multi-process case (two gunicorn replicas, the holder killed mid-batch)
is tests/test_audit_forward_replicas.py; syslog (real rsyslogd) is
tests/test_audit_forward_syslog.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import audit
from gateway.audit import forwarding
from gateway.db.models import AuditEvent, AuditForwardCursor
from gateway.db.units import write_transaction
from gateway.outbound import verify_signature
from gateway.platform.extensions import db
from tests.conftest import TEST_AUDIT_KEY
from tests.receivers import HttpReceiver, Received, TlsAuthority, tls_authority
from tests.siem import chain_of, ledger

PROJECT = Path(__file__).resolve().parent.parent
TOKEN = "siem-token-" + "t" * 24
SECRET = "siem-secret-" + "s" * 24
TEST_EVENT = "test.forwarded"


@dataclass
class Siem:
    """An HTTPS receiver that acknowledges each batch (200) or refuses it (503) as told, and keeps both lists.

    While ``passing`` is clear, a batch is held (``held`` is set) until it is set again, and then
    refused: its sender is meant to be gone by then (killed mid-batch), so nobody got an answer.
    """

    authority: TlsAuthority
    receiver: HttpReceiver = field(init=False)
    refuse_next: int = 0
    acknowledged: list[Received] = field(default_factory=list)
    refused: list[Received] = field(default_factory=list)
    arrived: list[Received] = field(default_factory=list)  # both, in arrival order
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    passing: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.receiver = HttpReceiver(tls=self.authority.server_context, responder=self.respond)
        self.passing.set()

    def respond(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(0.005)  # widen the window in which a second forwarder's batch would overlap
            held = not self.passing.is_set()
            if held:
                self.held.set()
                self.passing.wait(60)
            with self.lock:
                self.arrived.append(request)
                refuse = held  # a held batch's sender is gone: nobody gets this answer
                if not held and self.refuse_next > 0:
                    self.refuse_next -= 1
                    refuse = True
                if refuse:
                    self.refused.append(request)
                    return 503, {}, b"busy"
                self.acknowledged.append(request)
                return 200, {}, b"ok"
        finally:
            with self.lock:
                self.in_flight -= 1

    def events(self, requests: list[Received] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            taken = list(self.acknowledged if requests is None else requests)
        return [json.loads(line) for request in taken for line in request.body.decode("utf-8").splitlines()]


@pytest.fixture
def siem(tmp_path: Path) -> Iterator[Siem]:
    receiver = Siem(tls_authority(tmp_path))
    receiver.receiver.start()
    yield receiver
    receiver.receiver.stop()


def forwarding_app(make_app: Callable[..., Flask], siem: Siem, **overrides: Any) -> Flask:
    settings: dict[str, Any] = {
        "AUDIT_FORWARD": f"SIEM={siem.receiver.url}/ingest?source=gw",
        "OUTBOUND_CA_FILE": siem.authority.ca_file,
        "AUDIT_FORWARD_SIEM_TOKEN": TOKEN,
        "AUDIT_FORWARD_SIEM_SECRET": SECRET,
        "AUDIT_FORWARD_BATCH": 7,
        "AUDIT_FORWARD_POLL_SECONDS": 1,
        "AUDIT_FORWARD_LEASE_SECONDS": 3,
    }
    return make_app(**{**settings, **overrides})


@pytest.fixture
def forwarders(make_app: Callable[..., Flask]) -> Iterator[Callable[[Flask], forwarding.Forwarding]]:
    """Start an app's forwarders as a serving process does; stopped before the apps are closed."""
    started: list[Flask] = []

    def start(app: Flask) -> forwarding.Forwarding:
        running = forwarding.start_forwarding(app)
        assert running is not None
        started.append(app)
        return running

    yield start
    for app in started:
        forwarding.stop_forwarding(app)


def write_events(app: Flask, count: int) -> None:
    with app.app_context():
        for number in range(count):
            audit.record(TEST_EVENT, outcome="ok", detail={"n": number, "text": 'é ] " \\ \n'})
        db.session.remove()


def cursor(app: Flask, name: str = "siem") -> AuditForwardCursor | None:
    with app.app_context():
        row = db.session.get(AuditForwardCursor, name)
        if row is not None:
            db.session.expunge(row)
        db.session.remove()
        return row


def head(app: Flask) -> int:
    return max(ledger(app), default=0)


def wait_until(predicate: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {seconds}s")


def caught_up(app: Flask) -> bool:
    row = cursor(app)
    return row is not None and row.last_seq == head(app)


def test_an_https_receiver_that_goes_down_and_comes_back_gets_every_event_once_per_acknowledgement(
    make_app, siem, forwarders, tmp_path
):
    app = forwarding_app(make_app, siem)
    write_events(app, 3)  # before the destination exists: it starts at the head, these are never sent
    forwarders(app)
    start = wait_until(lambda: cursor(app), 5)
    assert start.last_seq == head(app) == 3
    write_events(app, 10)
    wait_until(lambda: caught_up(app), 10)

    siem.receiver.stop()
    write_events(app, 9)
    assert wait_until(lambda: (row := cursor(app)) is not None and row.last_error, 10) == "connect"
    assert cursor(app).failing_since is not None
    siem.refuse_next = 1  # it comes back answering 503 once: received, not acknowledged
    siem.receiver.start()
    write_events(app, 5)
    wait_until(lambda: caught_up(app), 15)

    hashes = ledger(app)
    events = siem.events()
    seqs = chain_of(events, after=(start.last_seq, start.last_hash))
    assert seqs == list(range(4, head(app) + 1))  # once each, in order, contiguous
    assert all(event["hash"] == hashes[event["seq"]] for event in events)
    with app.app_context():
        verified = audit.verify(db.session, audit.Keyring.from_config(app.config))
        db.session.remove()
    assert verified.ok and verified.head == {"seq": seqs[-1], "hash": events[-1]["hash"]}
    # The refused batch came again in an acknowledged one; nothing acknowledged came twice.
    arrivals = Counter(event["seq"] for event in siem.events(siem.arrived))
    refused = Counter(event["seq"] for event in siem.events(siem.refused))
    assert refused and all(arrivals[seq] == 1 + refused[seq] for seq in seqs)
    row = cursor(app)
    assert row.last_error is None and row.failing_since is None and row.forwarded_at is not None
    # Forwarding wrote nothing to the ledger: every event is one the test wrote.
    assert {event["event"] for event in events} == {TEST_EVENT}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.event != TEST_EVENT)) == 0
        db.session.remove()

    # Each batch: bearer token, the webhook headers signed with the destination's secret, JSON lines.
    request = siem.acknowledged[0]
    batch = [json.loads(line) for line in request.body.splitlines()]
    assert request.path == "/ingest?source=gw"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert request.headers["X-Gateway-Delivery"] == f"audit-{batch[0]['seq']}-{batch[-1]['seq']}"
    assert verify_signature(SECRET.encode(), request.headers, request.body, now=int(time.time()))
    # A receiver holding the audit key can recompute each hash from the line itself.
    for event in batch:
        document = {key: value for key, value in event.items() if key != "hash"}
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        message = f"{event['prev_hash']}\n{event['seq']}\n{text}".encode()
        assert hmac.new(TEST_AUDIT_KEY.encode(), message, hashlib.sha256).hexdigest() == event["hash"]
    assert batch[0]["detail"]["text"] == 'é ] " \\ \n' and batch[0]["key_id"] == "test1"

    readme_continuity_check(app, siem, tmp_path)


def readme_continuity_check(app: Flask, siem: Siem, folder: Path) -> None:
    """The README's receiver-side script passes on what arrived, and names the gap when a batch is missing."""
    readme = (PROJECT / "README.md").read_text()
    script = re.search(r"```python\n(# check_continuity\.py.*?)```", readme, re.S)
    assert script, "README has no check_continuity.py block"
    (folder / "check_continuity.py").write_text(script.group(1))
    with app.app_context():
        anchor = audit.current_anchor(db.session(), audit.Keyring.from_config(app.config))
        db.session.remove()
    (folder / "anchors.jsonl").write_text(json.dumps({"level": "INFO", "anchor": anchor}) + "\n")
    received = b"".join(request.body for request in siem.arrived)  # duplicates included, as a SIEM has them

    def check(data: bytes) -> subprocess.CompletedProcess[bytes]:
        argv = [sys.executable, str(folder / "check_continuity.py"), str(folder / "anchors.jsonl")]
        return subprocess.run(argv, input=data, capture_output=True, timeout=30, check=False)

    good = check(received)
    assert good.returncode == 0, good.stderr
    assert b"continuous" in good.stdout
    lines = received.splitlines(keepends=True)
    gone = json.loads(lines[3])["seq"]
    broken = check(b"".join(line for line in lines if json.loads(line)["seq"] != gone))
    assert broken.returncode == 1 and f"{gone}".encode() in broken.stderr


@pytest.mark.both_engines
def test_two_processes_forward_one_batch_at_a_time_and_hand_over_on_a_clean_stop(make_app, siem, forwarders):
    first, second = forwarding_app(make_app, siem), forwarding_app(make_app, siem)
    running = {first: forwarders(first), second: forwarders(second)}
    start = wait_until(lambda: cursor(first), 5)
    for _ in range(3):
        write_events(first, 6)
        write_events(second, 6)
    wait_until(lambda: caught_up(first), 15)
    holder = cursor(first).lease_holder
    assert holder in {running[first].holder, running[second].holder}
    assert siem.max_in_flight == 1  # never two batches at once
    chain_of(siem.events(), after=(start.last_seq, start.last_hash))

    leaving = first if running[first].holder == holder else second
    staying = second if leaving is first else first
    forwarding.stop_forwarding(leaving)
    assert cursor(staying).lease_holder is None  # released: the other takes over without waiting for the expiry
    write_events(staying, 5)
    wait_until(lambda: caught_up(staying) and cursor(staying).lease_holder == running[staying].holder, 10)
    events = siem.events()
    seqs = chain_of(events, after=(start.last_seq, start.last_hash))
    assert seqs == list(range(start.last_seq + 1, head(first) + 1))  # each once, in order
    hashes = ledger(first)
    assert all(event["hash"] == hashes[event["seq"]] for event in events)
    assert siem.max_in_flight == 1


def old_events(app: Flask, count: int) -> None:
    base = datetime(2024, 5, 1, tzinfo=UTC)
    with app.app_context(), write_transaction() as tx:
        for number in range(count):
            audit.append(TEST_EVENT, session=tx, at=base + timedelta(minutes=number), outcome="ok")


OPERATOR = {"id": None, "name": "cli:test"}


@pytest.mark.both_engines
def test_prune_refuses_to_cut_past_the_slowest_cursor_unless_forced(make_app):
    app = make_app(AUDIT_FORWARD="siem=https://siem.example/ingest,slow=syslog+tls://siem.example:6514")
    old_events(app, 10)
    write_events(app, 2)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    with app.app_context():
        forwarding.reset("siem", 12, actor=OPERATOR)  # sent up to 11: the whole cut and more
        previous, now = forwarding.reset("slow", 5, actor=OPERATOR)  # sent up to 4 only
        assert previous is None and now.seq == 4
        with pytest.raises(audit.PruneRefused) as refused:
            audit.prune(cutoff, actor=OPERATOR)
        assert "'slow' has been sent up to seq 4" in str(refused.value)
        refusal = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
        assert refusal.event == "audit.prune_refused" and refusal.outcome == "behind_cursor"
        assert refusal.detail["behind"] == [{"destination": "slow", "sent_to_seq": 4}]
        assert refusal.detail["would_cut_to_seq"] == 10 and refusal.actor_name == "cli:test"
        assert db.session.scalar(sa.select(sa.func.min(AuditEvent.seq))) == 1  # nothing deleted

        pruned = audit.prune(cutoff, force=True, actor=OPERATOR)
        assert pruned is not None
        assert pruned.detail["forced_past"] == [{"destination": "slow", "sent_to_seq": 4}]
        assert db.session.scalar(sa.select(sa.func.min(AuditEvent.seq))) == 11
        resets = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.event == "audit.forward_reset")).all()
        assert [(r.detail["destination"], r.detail["from_seq"]) for r in resets] == [("siem", 12), ("slow", 5)]
        assert audit.verify(db.session, audit.Keyring.from_config(app.config)).ok
        db.session.remove()


def test_a_receiver_with_an_untrusted_certificate_gets_nothing_and_the_lag_shows_it(
    make_app, siem, forwarders, tmp_path
):
    (tmp_path / "other").mkdir()
    stranger = tls_authority(tmp_path / "other")
    app = forwarding_app(make_app, siem, OUTBOUND_CA_FILE=stranger.ca_file)
    forwarders(app)
    wait_until(lambda: cursor(app), 5)
    write_events(app, 4)
    assert wait_until(lambda: cursor(app).last_error, 10) == "tls"
    assert siem.receiver.received == []
    client = app.test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gateway_audit_forward_lag_events{destination="siem"} 4.0' in text


def test_metrics_report_the_lag_of_configured_destinations_only(make_app):
    app = make_app(AUDIT_FORWARD="siem=https://siem.example/ingest")
    with app.app_context():
        forwarding.reset("siem", 1, actor=OPERATOR)  # 1 event (the reset itself) not sent yet
        forwarding.reset("siem", 1, actor=OPERATOR)
        db.session.add(AuditForwardCursor(destination="retired", last_seq=0, created_at=datetime.now(UTC)))
        db.session.commit()
    text = app.test_client().get("/metrics").get_data(as_text=True)
    lags = re.findall(r'^gateway_audit_forward_lag_events\{destination="([^"]+)"\} (\S+)$', text, re.M)
    assert lags == [("siem", "2.0")]


# --- settings and the operator CLI ----------------------------------------------------------


def forward_config(tmp_path: Path, **overrides: str) -> dict[str, Any]:
    from config import load_config
    from tests.test_config import production

    return load_config(production(**overrides), tmp_path / "instance")


def test_destinations_are_parsed_with_their_credentials_from_the_environment_or_files(tmp_path):
    (tmp_path / "token").write_text("file-token\n")
    config = forward_config(
        tmp_path,
        AUDIT_FORWARD=" Splunk = https://hec.example.com/x?y=1 , syslog_1=syslog+tls://siem.example.com:6514,"
        "local=http://127.0.0.1:8080/in,raw=syslog+tcp://10.0.0.5:514",
        AUDIT_FORWARD_SPLUNK_TOKEN_FILE=str(tmp_path / "token"),
        AUDIT_FORWARD_SPLUNK_SECRET="sign-me",
        AUDIT_FORWARD_LOCAL_TOKEN="local-token",
        AUDIT_FORWARD_LEASE_SECONDS="12",
    )
    splunk, syslog_1, local, raw = config["AUDIT_FORWARD"]
    assert (splunk.name, splunk.kind, splunk.url, splunk.tls) == (
        "splunk",
        "http",
        "https://hec.example.com/x?y=1",
        True,
    )
    assert (splunk.token, splunk.secret) == ("file-token", "sign-me")
    assert (syslog_1.kind, syslog_1.host, syslog_1.port, syslog_1.tls) == ("syslog", "siem.example.com", 6514, True)
    assert (local.tls, local.token) == (False, "local-token")
    assert (raw.kind, raw.tls, raw.port) == ("syslog", False, 514)
    assert "file-token" not in repr(config["AUDIT_FORWARD"]) and "y=1" not in repr(config["AUDIT_FORWARD"])
    assert config["AUDIT_FORWARD_TIMEOUT_SECONDS"] == 4.0 and config["AUDIT_FORWARD_BATCH"] == 500


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"AUDIT_FORWARD": "siem"}, "AUDIT_FORWARD: each entry must look like name=url"),
        ({"AUDIT_FORWARD": "9lives=https://x.example"}, "'9lives'"),
        ({"AUDIT_FORWARD": "my-siem=https://x.example"}, "'my-siem'"),
        ({"AUDIT_FORWARD": "a=https://x.example,A=https://y.example"}, "'a' is given twice"),
        ({"AUDIT_FORWARD": "a=ftp://x.example/key=SECRETX"}, "destination 'a': expected https://"),
        ({"AUDIT_FORWARD": "a=https://user:SECRETX@x.example"}, "no user name or password"),
        ({"AUDIT_FORWARD": "a=syslog+tcp://x.example"}, "a syslog URL is host:port"),
        ({"AUDIT_FORWARD": "a=syslog+tls://x.example:6514/path?SECRETX"}, "a syslog URL is host:port"),
        ({"AUDIT_FORWARD": "a=https://x.example:99999/SECRETX"}, "destination 'a': expected"),
        ({"AUDIT_FORWARD": "a=syslog+tcp://x.example:514", "AUDIT_FORWARD_A_TOKEN": "t"}, "AUDIT_FORWARD_A_TOKEN"),
        ({"AUDIT_FORWARD": "a=http://siem.example/in", "AUDIT_FORWARD_A_TOKEN": "t"}, "clear text"),
        ({"AUDIT_FORWARD_LEASE_SECONDS": "2"}, "AUDIT_FORWARD_LEASE_SECONDS"),
        ({"AUDIT_FORWARD_BATCH": "0"}, "AUDIT_FORWARD_BATCH"),
    ],
)
def test_a_bad_destination_is_refused_at_start_naming_the_setting_never_quoting_the_url(tmp_path, settings, named):
    from config import ConfigError

    with pytest.raises(ConfigError) as refused:
        forward_config(tmp_path, **settings)
    message = str(refused.value)
    assert named in message and "SECRETX" not in message and "\n" not in message


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_the_cli_shows_each_cursor_and_its_lag_and_moves_forgets_and_prunes_audited(make_app, database_url):
    from tests.conftest import base_environ
    from tests.test_cli import run_manage

    destinations = "siem=https://siem.example/ingest,backup=syslog+tcp://127.0.0.1:6514"
    environ = base_environ(database_url, AUDIT_FORWARD=destinations)
    app = make_app(AUDIT_FORWARD=destinations)
    old_events(app, 5)
    with app.app_context():
        forwarding.reset("siem", 3, actor=OPERATOR)  # siem at 2; backup has not started
        db.session.remove()

    table = run_manage(environ, "audit", "forward-status")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["siem"][1:4] == ["http", "2", "4"] and rows["siem"][-1] == "ok"
    assert rows["backup"][1:4] == ["syslog", "-", "-"] and "not started" in table.stdout

    refused = run_manage(environ, "audit", "prune", "--older-than-days", "30")
    assert (
        refused.returncode == 1 and "'siem' has been sent up to seq 2" in refused.stderr and "--force" in refused.stderr
    )
    with app.app_context(), pytest.raises(forwarding.ForwardRefused, match="must be between 1 and 8") as bad:
        forwarding.reset("siem", 99, actor=OPERATOR)
    assert bad.value.field == "--from-seq"
    moved = run_manage(environ, "audit", "forward-reset", "SIEM", "--from-seq", "6")
    assert moved.returncode == 0 and "siem: cursor 2 -> 5" in moved.stderr, moved.stderr
    with app.app_context(), pytest.raises(forwarding.ForwardRefused, match="still in AUDIT_FORWARD"):
        forwarding.forget("siem", actor=OPERATOR)
    retired = base_environ(database_url, AUDIT_FORWARD="backup=syslog+tcp://127.0.0.1:6514")
    forgotten = run_manage(retired, "audit", "forward-reset", "siem", "--forget")
    assert forgotten.returncode == 0 and "forgot siem (it had been sent up to seq 5)" in forgotten.stderr
    assert cursor(app) is None

    with app.app_context():
        events = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.event.like("audit.%")).order_by(AuditEvent.seq)
        )
        recorded = [(e.event, e.outcome, (e.detail or {}).get("destination"), e.actor_name) for e in events]
        db.session.remove()
    assert [entry[:3] for entry in recorded] == [
        ("audit.forward_reset", "ok", "siem"),
        ("audit.prune_refused", "behind_cursor", None),
        ("audit.forward_reset", "refused", "siem"),
        ("audit.forward_reset", "ok", "siem"),
        ("audit.forward_forgotten", "refused", "siem"),
        ("audit.forward_forgotten", "ok", "siem"),
    ]
    assert recorded[-1][3].startswith("cli:") and recorded[3][3].startswith("cli:")
