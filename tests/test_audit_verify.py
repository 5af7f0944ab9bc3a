"""``audit.verify``'s fast reader on both engines: whatever ``append`` can store verifies, and what
it rebuilds is held to the stored columns (odd values, batch boundaries, rewritten spellings).

Verification rebuilds each row's canonical text from the stored columns itself instead of
calling ``canonical_bytes`` per row (issue 5: >= 50,000 events/s); a row it rebuilt differently
from ``append`` would fail its HMAC, so "every kind of value verifies" is the equivalence test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask

from gateway import audit
from gateway.audit import ledger, verifier
from gateway.db.models import AuditEvent
from gateway.db.units import write_transaction
from gateway.platform.extensions import db
from tests.test_audit_chain import execute_sql, record_events, verify
from tests.test_audit_tamper import assert_broken_at, drop_update_trigger

pytestmark = pytest.mark.both_engines  # the ledger: canonical form of values as each engine returns them

ODD_VALUES: list[dict[str, Any]] = [
    {"params": {"zeta": 1, "alpha": {"y": [3, 2, 1], "b": None}, "mid": True}},  # key order, nesting
    {"params": {"note": "café ☕ 東京 \U0001f600", "quote": 'say "hi"', "slash": "a\\b/c"}},
    {"params": {"ctl": "tab\tnl\ncr\r\x01", "empty": "", "list": [], "dict": {}}},
    {"params": {"big": 2**70, "neg": -5, "float": 1.5, "tiny": 1e-300, "huge": 1e300, "false": False}},
    {"params": ["a", 1, None, {"k": "v"}]},
    {"params": "just a string"},
    {"params": 42, "detail": 1.5},  # SQLite keeps a bare JSON number as a number (NUMERIC affinity)
    {"params": None, "detail": None},
    {"detail": {"excerpt": "x" * 3000, "exit_code": 0, "output_sha256": "ab" * 32}},
    {"detail": {"lone": "\ud800 surrogate", "nul": "a\x00b"}},  # scrubbed by append, then stored
    {"params": {"nan": float("nan"), "inf": [float("inf"), -float("inf")]}},  # not JSON: recorded as text
    {"actor": {"id": None, "name": "cli:root"}, "user_agent": "Mozilla/5.0 (ünïcödé)"},
    {"actor": {"id": 7, "name": None}, "source_ip": "2001:db8::1", "command": "disk-usage"},
    {"actor": None, "run_id": "0b6a1d9e-3f53-4a35-9f0e-1d1c3c9e2f10", "outcome": "succeeded"},
    {"at": datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)},
    {"at": datetime(2024, 1, 1, 0, 0, 0, 0, tzinfo=UTC)},  # zero microseconds still print six digits
]


def append_odd_rows(app: Flask) -> int:
    with app.app_context(), write_transaction() as tx:
        for fields in ODD_VALUES:
            audit.append("test.odd", session=tx, **fields)
    return len(ODD_VALUES)


def test_every_kind_of_value_append_stores_verifies(app: Flask) -> None:
    count = append_odd_rows(app)
    result = verify(app)
    assert result.ok, result.reason
    assert result.checked == count
    with app.app_context():
        last = db.session.get(AuditEvent, count)
        assert result.head == {"seq": count, "hash": last.hash}


def test_an_edited_odd_value_is_still_detected(app: Flask) -> None:
    append_odd_rows(app)
    drop_update_trigger(app)
    # Same JSON value, different spelling: the canonical form is what is hashed, so this still verifies...
    same = '{"zeta":1,"mid":true,"alpha":{"b":null,"y":[3,2,1]}}'
    execute_sql(app, "UPDATE audit_events SET params = :value WHERE seq = 1", value=same)
    assert verify(app).ok
    # ...but a different value does not.
    execute_sql(app, "UPDATE audit_events SET params = :value WHERE seq = 1", value=same.replace("true", "false"))
    assert_broken_at(app, 1)


@pytest.mark.parametrize("bad_seq", [4, 5, 6, 9])
def test_tampering_is_found_across_batch_boundaries(app: Flask, monkeypatch, bad_seq: int) -> None:
    monkeypatch.setattr(verifier, "VERIFY_BATCH", 5)  # rows 1-5, 6-10, 11-12 arrive in separate batches
    record_events(app, 12)
    assert verify(app).checked == 12
    drop_update_trigger(app)
    execute_sql(app, "UPDATE audit_events SET outcome = 'forged' WHERE seq = :seq", seq=bad_seq)
    assert_broken_at(app, bad_seq)


@pytest.mark.parametrize("gone", [5, 6])
def test_a_row_deleted_at_a_batch_boundary_is_found(app: Flask, monkeypatch, gone: int) -> None:
    monkeypatch.setattr(verifier, "VERIFY_BATCH", 5)
    record_events(app, 12)
    execute_sql(app, "DELETE FROM audit_events WHERE seq = :seq", seq=gone)
    assert_broken_at(app, gone)
    partial = verify(app, from_seq=gone + 1)
    assert not partial.ok and partial.first_bad_seq == gone + 1  # its predecessor is gone: no link to check
    assert verify(app, from_seq=gone + 2).ok


def test_a_stored_hash_that_is_not_hex_is_reported_not_raised(app: Flask) -> None:
    record_events(app, 4)
    drop_update_trigger(app)
    execute_sql(app, "UPDATE audit_events SET hash = :forged WHERE seq = 3", forged="é" * 64)
    assert_broken_at(app, 3)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_time_in_another_spelling_of_the_same_instant_is_detected(app: Flask) -> None:
    """SQLite keeps ``at`` as text; "T" instead of " " is the same instant, but not what was hashed."""
    record_events(app, 4)
    drop_update_trigger(app)
    execute_sql(app, "UPDATE audit_events SET at = replace(at, ' ', 'T') WHERE seq = 2")
    assert_broken_at(app, 2)


def test_non_finite_numbers_are_recorded_as_their_names(app: Flask) -> None:
    """A request carrying NaN must still leave its audit record (not fail the append)."""
    with app.app_context(), write_transaction() as tx:
        row = audit.append("test.nan", session=tx, params={"x": float("nan"), "y": [float("-inf")]})
    assert row.params == {"x": "nan", "y": ["-inf"]}
    assert verify(app).ok


def test_the_verifier_fills_the_ledgers_canonical_text() -> None:
    """The text around the verifier's values is written by the ledger's encoder; slots out of order do not load."""
    keys = sorted(ledger.DOCUMENT_KEYS)
    document = {key: [key, {"n": index}, "é\n"] for index, key in enumerate(keys)}
    template = ledger.slot_template(keys, ledger.DOCUMENT_KEYS)
    filled = template % tuple(ledger.CANONICAL_JSON.encode(document[key]) for key in keys)
    assert filled == json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    with pytest.raises(ValueError):
        ledger.slot_template(keys[::-1], ledger.DOCUMENT_KEYS)
    with pytest.raises(ValueError):
        ledger.slot_template(keys[:-1], ledger.DOCUMENT_KEYS)
