"""Structured logs: JSON lines carrying request ids, and no secrets in them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from gateway.identity import accounts
from gateway.platform.logs import REQUEST_ID_PATTERN, JsonFormatter
from tests.conftest import PASSWORDS, login_response


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged (DEBUG and up) while the test runs, as the production handler writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_response_carries_a_fresh_request_id_that_its_log_lines_share(app, json_log):
    client = app.test_client()
    first = client.get("/login").headers["X-Request-ID"]
    second = client.get("/no-such-page").headers["X-Request-ID"]
    assert first != second
    assert REQUEST_ID_PATTERN.fullmatch(first) and REQUEST_ID_PATTERN.fullmatch(second)
    access = [entry for entry in lines(json_log) if entry["logger"] == "gateway.access"]
    assert [entry["request_id"] for entry in access] == [first, second]
    assert {"time", "level", "message", "method", "path", "status", "duration_ms"} <= set(access[0])
    assert access[0]["route"] == "/login" and access[0]["status"] == 200


def test_an_incoming_request_id_is_ignored_unless_a_proxy_is_trusted(make_app):
    untrusted = make_app().test_client()
    assert untrusted.get("/login", headers={"X-Request-ID": "lb-1234567890"}).headers["X-Request-ID"] != (
        "lb-1234567890"
    )
    trusted = make_app(TRUSTED_PROXY_COUNT=1).test_client()
    assert trusted.get("/login", headers={"X-Request-ID": "lb-1234567890"}).headers["X-Request-ID"] == "lb-1234567890"
    for forged in ("short", "x" * 65, 'abcdefgh"}{"level":"CRITICAL', "abc def ghi"):
        echoed = trusted.get("/login", headers={"X-Request-ID": forged}).headers["X-Request-ID"]
        assert echoed != forged and REQUEST_ID_PATTERN.fullmatch(echoed)


def test_signing_in_logs_nothing_containing_the_password(app, json_log):
    with app.app_context():
        accounts.create_user("staff", PASSWORDS["staff"])
    client = app.test_client()
    wrong = "Tr0ub4dor-wrong-guess"
    assert login_response(client, "staff", wrong).status_code == 401
    assert login_response(client, "staff", PASSWORDS["staff"]).status_code == 302
    text = json_log.getvalue()
    assert text, "expected the requests to be logged"
    assert wrong not in text and PASSWORDS["staff"] not in text
    assert all(entry["path"] == "/login" for entry in lines(json_log) if entry["logger"] == "gateway.access")


def test_records_are_one_json_object_with_extra_fields_and_exceptions():
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("gateway.test", logging.ERROR, __file__, 1, "run %s failed", ("r1",), sys.exc_info())
    record.run_id = "r1"
    output = formatter.format(record)
    assert "\n" not in output.split('"exception"')[0]
    entry = json.loads(output)
    assert entry["message"] == "run r1 failed" and entry["level"] == "ERROR" and entry["logger"] == "gateway.test"
    assert entry["run_id"] == "r1" and entry["request_id"] is None
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("Z")


def test_audit_anchors_are_shipped_as_structured_fields():
    anchor = {"seq": 1000, "hash": "ab" * 32, "at": "2024-01-01T00:00:00.000000Z", "key_id": "k1", "sig": "cd" * 32}
    record = logging.LogRecord("gateway.audit.anchor", logging.INFO, __file__, 1, json.dumps(anchor), (), None)
    assert json.loads(JsonFormatter().format(record))["anchor"] == anchor


def test_production_logs_json_to_stderr_once_per_process(make_app):
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        for _ in range(2):
            make_app(GATEWAY_ENV="production", RUN_AS_USER="nobody", PUBLIC_BASE_URL="https://ops.example.com")
        added = [handler for handler in root.handlers if handler not in before]
        assert len(added) == 1 and isinstance(added[0].formatter, JsonFormatter)
        assert all(handler in root.handlers for handler in before)  # pytest's capture keeps working
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)


def test_a_text_access_line_stays_one_line_whatever_the_path(app, caplog):
    """Outside production the access line is text: a decoded ``%0A`` in a path must not start a forged line."""
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        app.test_client().get("/no-such%0A2026-01-01 INFO gateway.audit: forged?key=secret-looking-key")
    [record] = [r for r in caplog.records if r.name == "gateway.access"]
    message = record.getMessage()
    assert re.fullmatch(r"GET /no-such\\x0a2026-01-01 INFO gateway\.audit: forged \d{3} \d+\.\dms", message), message
    assert "secret-looking-key" not in message
