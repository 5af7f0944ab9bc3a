"""RFC 5424 messages and RFC 6587 octet counting, as the audit forwarder sends them (no receiver needed).

The formatter is strict: what the grammar forbids raises instead of being sent
mangled.  Real rsyslogd receives them in tests/test_audit_forward_syslog.py.
"""

from __future__ import annotations

import pytest

from gateway.outbound.rfc5424 import BOM, Rfc5424, frame, header_field, sd_name, structured_data
from tests.siem import parse_syslog

AT = "2026-12-07T10:11:12.123456Z"


def test_a_message_has_the_header_the_structured_data_and_a_utf8_message():
    formatter = Rfc5424(hostname="ops.example.com", app_name="ops-gateway")
    sd = structured_data("ledger@32473", [("seq", "7"), ("hash", "ab")])
    message = formatter.message(timestamp=AT, msgid="run.started", sd=sd, msg='{"é":1}')
    assert message == (
        b'<110>1 2026-12-07T10:11:12.123456Z ops.example.com ops-gateway - run.started [ledger@32473 seq="7" hash="ab"] '
        + BOM
        + '{"é":1}'.encode()
    )
    parsed = parse_syslog(message)
    assert (parsed.pri, parsed.hostname, parsed.msgid) == (110, "ops.example.com", "run.started")
    assert parsed.sd == {"ledger@32473": {"seq": "7", "hash": "ab"}} and parsed.msg == '{"é":1}'


def test_param_values_escape_quote_backslash_and_bracket_and_parse_back():
    value = 'a"b\\c]d é'
    sd = structured_data("x@32473", [("key_id", value)])
    assert sd == '[x@32473 key_id="a\\"b\\\\c\\]d é"]'
    message = Rfc5424(hostname=None, app_name="app").message(timestamp="-", msgid=None, sd=sd, msg="m")
    assert message.startswith(b"<110>1 - - app - - [")
    assert parse_syslog(message).sd["x@32473"]["key_id"] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [("hostname", "two words"), ("hostname", "h" * 256), ("app_name", "a" * 49), ("msgid", "m" * 33), ("msgid", "é")],
)
def test_header_fields_outside_the_grammar_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        header_field(field, value)


@pytest.mark.parametrize("name", ["", "a=b", "a b", "a]b", 'a"b', "n" * 33, "é"])
def test_sd_names_outside_the_grammar_are_refused(name):
    with pytest.raises(ValueError):
        sd_name(name)


@pytest.mark.parametrize(
    "timestamp", ["2026-12-07 10:11:12Z", "2026-12-07T10:11:12.1234567Z", "2026-12-07T10:11:12+01:00"]
)
def test_timestamps_must_be_rfc3339_utc_with_at_most_microseconds(timestamp):
    with pytest.raises(ValueError, match="timestamp"):
        Rfc5424(hostname="h", app_name="a").message(timestamp=timestamp, msgid="m", sd="-", msg="x")


def test_octet_counting_counts_bytes_not_characters():
    message = b"<110>1 - - a - - - " + BOM + "ééé".encode()
    framed = frame(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(message) == len(rest) and rest == message
    assert frame(message) + frame(b"x") == framed + b"1 x"
