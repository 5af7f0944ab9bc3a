"""The outbound chokepoint against real receivers: verified TLS, no redirects, timeouts, the webhook signature."""

from __future__ import annotations

import json
import socket
import time

import pytest

from config import ConfigError, load_config
from gateway.outbound import FAILURE_REASONS, post, signature, signed_headers, verify_signature
from tests.receivers import HttpReceiver, tls_authority

BODY = json.dumps({"id": "d1", "event": "run.finished"}).encode()


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return tls_authority(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def https_receiver(authority):
    receiver = HttpReceiver(tls=authority.server_context).start()
    yield receiver
    receiver.stop()


def test_a_post_reaches_an_https_receiver_trusted_through_the_ca_file(https_receiver, authority):
    headers = signed_headers("d1", BODY, int(time.time()), b"shh-secret")
    result = post(https_receiver.url + "/hook", BODY, headers, timeout=5, ca_file=authority.ca_file)
    assert result.ok and result.status == 200 and result.reason is None
    [request] = https_receiver.received
    assert request.path == "/hook" and request.body == BODY
    assert request.headers["X-Gateway-Delivery"] == "d1"
    assert verify_signature(b"shh-secret", request.headers, request.body, now=int(time.time()))


def test_an_unknown_ca_is_refused_and_nothing_is_received(https_receiver):
    result = post(https_receiver.url, BODY, {}, timeout=5, ca_file=None)
    assert not result.ok and result.reason == "tls"
    assert https_receiver.received == []


def test_a_certificate_for_another_host_is_refused(tmp_path):
    other = tls_authority(tmp_path, hostnames=("receiver.example.org",))
    receiver = HttpReceiver(tls=other.server_context).start()
    try:
        result = post(receiver.url, BODY, {}, timeout=5, ca_file=other.ca_file)
    finally:
        receiver.stop()
    assert not result.ok and result.reason == "tls"
    assert receiver.received == []


def test_redirects_are_not_followed(authority):
    target = HttpReceiver(tls=authority.server_context).start()
    redirector = HttpReceiver(
        tls=authority.server_context, responder=lambda _r: (307, {"Location": target.url + "/stolen"}, b"")
    ).start()
    try:
        result = post(redirector.url, BODY, {}, timeout=5, ca_file=authority.ca_file)
    finally:
        redirector.stop()
        target.stop()
    assert not result.ok and result.status == 307 and result.reason == "redirect"
    assert len(redirector.received) == 1 and target.received == []


def test_an_error_status_is_a_failure_with_a_bounded_reply():
    receiver = HttpReceiver(responder=lambda _r: (503, {}, b"x" * 100_000)).start()
    try:
        result = post(receiver.url, BODY, {}, timeout=5)
    finally:
        receiver.stop()
    assert not result.ok and result.status == 503 and result.reason == "status"
    assert len(result.reply) <= 4096


def test_a_stalled_receiver_times_out():
    receiver = HttpReceiver(delay_seconds=2).start()
    try:
        started = time.monotonic()
        result = post(receiver.url, BODY, {}, timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        receiver.stop()
    assert not result.ok and result.reason == "timeout"
    assert elapsed < 2.5


def test_a_receiver_that_is_down_is_a_connect_failure_and_comes_back():
    receiver = HttpReceiver().start()
    receiver.stop()
    down = post(receiver.url, BODY, {}, timeout=2)
    assert not down.ok and down.reason == "connect"
    receiver.start()
    try:
        assert post(receiver.url, BODY, {}, timeout=2).ok
    finally:
        receiver.stop()


@pytest.mark.parametrize("url", ["ftp://localhost/x", "file:///etc/passwd", "javascript:alert(1)", ""])
def test_only_http_urls_are_sent_to(url):
    result = post(url, BODY, {}, timeout=1)
    assert not result.ok and result.reason == "url"


def test_failure_reasons_never_carry_the_url():
    """A Slack or webhook URL is a secret: a failure says why in a closed word, never where."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = post(f"http://127.0.0.1:{port}/services/T0/B0/SECRETTOKEN", BODY, {}, timeout=1)
    assert result.reason in FAILURE_REASONS
    assert "SECRETTOKEN" not in repr(result)


def test_the_signature_matches_a_reference_vector():
    # printf '1700000000.{"id":"d1"}' | openssl dgst -sha256 -hmac 'shh-secret'
    expected = "sha256=a3be584b6570142026330d605f002388a663d0c748a4a3ccf07f20c3bf0e861a"
    assert signature(b"shh-secret", 1700000000, b'{"id":"d1"}') == expected


def test_a_receiver_rejects_altered_bodies_old_timestamps_and_missing_signatures():
    now = 1_800_000_000
    headers = signed_headers("d1", BODY, now, b"k")
    assert verify_signature(b"k", headers, BODY, now=now + 300)
    assert not verify_signature(b"k", headers, BODY + b" ", now=now)
    assert not verify_signature(b"k", headers, BODY, now=now + 301)
    assert not verify_signature(b"other", headers, BODY, now=now)
    unsigned = signed_headers("d1", BODY, now, None)
    assert "X-Gateway-Signature" not in unsigned
    assert not verify_signature(b"k", unsigned, BODY, now=now)
    # the MAC covers the timestamp: moving it invalidates the signature
    moved = {**headers, "X-Gateway-Timestamp": str(now + 1)}
    assert not verify_signature(b"k", moved, BODY, now=now)


def _testing(**extra: str) -> dict[str, str]:
    return {"GATEWAY_ENV": "testing", "SECRET_KEY": "s" * 40, "AUDIT_KEY": "a" * 40, **extra}


def test_outbound_ca_file_is_read_at_start(tmp_path, authority):
    assert load_config(_testing(OUTBOUND_CA_FILE=authority.ca_file), tmp_path)["OUTBOUND_CA_FILE"] == authority.ca_file
    assert load_config(_testing(), tmp_path)["OUTBOUND_CA_FILE"] is None


@pytest.mark.parametrize("content", [None, "not a certificate\n", b"\xff\xfe"])
def test_an_unusable_outbound_ca_file_refuses_to_start(tmp_path, content):
    path = tmp_path / "ca.pem"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError, match="OUTBOUND_CA_FILE"):
        load_config(_testing(OUTBOUND_CA_FILE=str(path)), tmp_path)
