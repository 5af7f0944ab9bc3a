"""Audit forwarding to a real rsyslogd (rsyslog + rsyslog-gnutls), over TCP and over TLS, octet-counted.

rsyslogd runs as a child of the test with its own configuration (tests/rsyslog.py:
imtcp on a free port, imtcp with the gtls driver and a trustme certificate on
another, ``maxMessageSize`` as the README says) and writes every message as
received to a file per input.  The test reads those files as a SIEM would:
each line a valid RFC 5424 message whose structured data carries ``seq``,
``prev_hash``, ``hash`` and ``key_id``, in ``seq`` order without a gap or a
repeat across a receiver restart, each message the canonical text the row's
HMAC covers (recomputed here with the audit key), a 20 KB row whole; and the
README's continuity script agrees.  Skipped without rsyslogd, failed under
``GATEWAY_TEST_REQUIRE_RSYSLOG=1``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from gateway import audit
from gateway.audit import forwarding
from gateway.audit.forwarding.senders import SD_ID
from gateway.platform.extensions import db
from tests.conftest import TEST_AUDIT_KEY
from tests.rsyslog import Rsyslog
from tests.siem import chain_of, ledger, parse_syslog
from tests.test_audit_forward import PROJECT, TEST_EVENT, cursor, head, wait_until, write_events

DESTINATIONS = ("plain", "secure")
pytestmark = pytest.mark.slow  # a real rsyslogd in a process of its own, restarted mid-test


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def rsyslog(tmp_path: Path, ca: trustme.CA) -> Iterator[Rsyslog]:
    (tmp_path / "rsyslog").mkdir()
    receiver = Rsyslog(tmp_path / "rsyslog", ca).start()
    yield receiver
    receiver.stop()


def caught_up(app) -> bool:
    return all((row := cursor(app, name)) is not None and row.last_seq == head(app) for name in DESTINATIONS)


def received(rsyslog: Rsyslog, input_name: str, count: int) -> list[bytes]:
    """The first ``count`` lines, once rsyslog has written them (it writes after acknowledging)."""

    def enough() -> list[bytes] | None:
        lines = rsyslog.lines(input_name)
        return lines if len(lines) >= count else None

    return wait_until(enough, 10)


def test_rsyslog_gets_every_event_over_tcp_and_tls_in_order_across_a_restart(make_app, rsyslog, ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    app = make_app(
        AUDIT_FORWARD=(
            f"plain=syslog+tcp://127.0.0.1:{rsyslog.tcp_port},secure=syslog+tls://localhost:{rsyslog.tls_port}"
        ),
        OUTBOUND_CA_FILE=str(ca_file),
        AUDIT_FORWARD_BATCH=8,
        AUDIT_FORWARD_POLL_SECONDS=1,
        AUDIT_FORWARD_LEASE_SECONDS=3,
        PUBLIC_BASE_URL="https://ops.example.com",
    )
    write_events(app, 2)  # before the destinations exist: not sent
    forwarding.start_forwarding(app)
    try:
        starts = {name: wait_until(lambda name=name: cursor(app, name), 5) for name in DESTINATIONS}
        write_events(app, 20)
        with app.app_context():
            audit.record(TEST_EVENT, outcome="ok", detail={"big": "é" * 10_000})  # 20 KB of UTF-8: past rsyslog's 8k
            db.session.remove()
        wait_until(lambda: caught_up(app), 15)
        sent_before_restart = head(app) - 2
        for name in ("tcp", "tls"):
            received(rsyslog, name, sent_before_restart)

        rsyslog.stop()
        write_events(app, 9)
        wait_until(lambda: all(cursor(app, name).last_error == "connect" for name in DESTINATIONS), 10)
        rsyslog.start()
        write_events(app, 4)
        wait_until(lambda: caught_up(app), 20)
    finally:
        forwarding.stop_forwarding(app)

    hashes = ledger(app)
    expected = list(range(3, head(app) + 1))
    for input_name, destination in (("tcp", "plain"), ("tls", "secure")):
        messages = [parse_syslog(line) for line in received(rsyslog, input_name, len(expected))]
        events = [{**message.sd[SD_ID], "message": message} for message in messages]
        start = starts[destination]
        assert chain_of(events, after=(start.last_seq, start.last_hash)) == expected  # once each, in order
        for event in events:
            message = event["message"]
            assert event["hash"] == hashes[int(event["seq"])] and event["key_id"] == "test1"
            assert (message.pri, message.hostname, message.app, message.msgid) == (
                110, "ops.example.com", "ops-gateway", TEST_EVENT,
            )  # fmt: skip
            # The message is the canonical text the HMAC covers: recomputable with the audit key.
            signed = f"{event['prev_hash']}\n{event['seq']}\n{message.msg}".encode()
            assert hmac.new(TEST_AUDIT_KEY.encode(), signed, hashlib.sha256).hexdigest() == event["hash"]
        documents = [json.loads(event["message"].msg) for event in events]
        assert any(document["detail"].get("big") == "é" * 10_000 for document in documents)
        assert [document["seq"] for document in documents] == expected
    readme_check_on(rsyslog.directory / "tls.log", app, tmp_path)


def readme_check_on(received_file: Path, app, folder: Path) -> None:
    """The README's continuity script reads rsyslog's file as it is."""
    script = re.search(r"```python\n(# check_continuity\.py.*?)```", (PROJECT / "README.md").read_text(), re.S)
    assert script
    (folder / "check_continuity.py").write_text(script.group(1))
    with app.app_context():
        anchor = audit.current_anchor(db.session(), audit.Keyring.from_config(app.config))
        db.session.remove()
    (folder / "anchors.jsonl").write_text(json.dumps(anchor) + "\n")
    result = subprocess.run(
        [sys.executable, str(folder / "check_continuity.py"), str(folder / "anchors.jsonl")],
        input=received_file.read_bytes(), capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"to {anchor['seq']};".encode() in result.stdout
