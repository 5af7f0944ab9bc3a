"""The audit ledger's chain as DESIGN.md defines it, on SQLite and PostgreSQL.

The hashes are recomputed here from the stored columns with ``hmac``/``hashlib``
and the test key, independently of ``gateway.audit``, so these tests pin the
documented format (what an external verifier would implement), not just
"whatever the code does".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import audit
from gateway.db.units import write_transaction
from gateway.platform.extensions import db
from tests.conftest import TEST_AUDIT_KEY, login_response

pytestmark = pytest.mark.both_engines  # the ledger: seq and chain under each engine's write lock

GENESIS = "0" * 64
COLUMNS = (
    "seq",
    "at",
    "event",
    "actor_id",
    "actor_name",
    "source_ip",
    "user_agent",
    "command",
    "run_id",
    "params",
    "outcome",
    "detail",
    "key_id",
    "prev_hash",
    "hash",
)
RFC3339_UTC_MICROS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


# --- independent helpers (shared with the other audit test modules) ----------------------


def _as_datetime(value: Any) -> datetime:
    """SQLite hands back the stored text, PostgreSQL an aware datetime; both are UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def ledger_rows(app: Flask) -> list[dict[str, Any]]:
    """Every ledger row as stored, read with plain SQL (not through the ORM model)."""
    with app.app_context(), db.engine.connect() as connection:
        result = connection.execute(sa.text(f"SELECT {', '.join(COLUMNS)} FROM audit_events ORDER BY seq"))
        rows = [dict(row._mapping) for row in result]
    for row in rows:
        row["at"] = _as_datetime(row["at"])
        row["params"] = _as_json(row["params"])
        row["detail"] = _as_json(row["detail"])
    return rows


def canonical_at(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: dict[str, Any]) -> bytes:
    """JSON of every column but ``hash``: sorted keys, UTF-8, no whitespace, ``at`` RFC 3339 UTC."""
    no_actor = row["actor_id"] is None and row["actor_name"] is None
    document = {
        "seq": row["seq"],
        "at": canonical_at(row["at"]),
        "event": row["event"],
        "actor": None if no_actor else {"id": row["actor_id"], "name": row["actor_name"]},
        "source_ip": row["source_ip"],
        "user_agent": row["user_agent"],
        "command": row["command"],
        "run_id": row["run_id"],
        "params": row["params"],
        "outcome": row["outcome"],
        "detail": row["detail"],
        "key_id": row["key_id"],
        "prev_hash": row["prev_hash"],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def expected_hash(key: str, row: dict[str, Any]) -> str:
    message = f"{row['prev_hash']}\n{row['seq']}\n".encode() + canonical(row)
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(app: Flask, **kwargs: Any) -> audit.Verification:
    with app.app_context():
        return audit.verify(db.session, audit.Keyring.from_config(app.config), **kwargs)


def record_events(app: Flask, count: int, **fields: Any) -> None:
    with app.app_context():
        for index in range(count):
            audit.record("test.event", outcome="ok", detail={"index": index}, **fields)


def execute_sql(app: Flask, statement: str, **params: Any) -> None:
    """Raw SQL with its own commit: what someone with direct database access can do."""
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text(statement), params)


# --- append() -------------------------------------------------------------------------------


def test_append_chains_rows_from_the_genesis_hash(app: Flask) -> None:
    with app.app_context():
        with write_transaction() as tx:
            for name in ("first", "second", "third"):
                audit.append(f"test.{name}", session=tx, outcome="ok")
        with write_transaction() as tx:
            audit.append("test.fourth", session=tx, actor={"id": 7, "name": "alice"}, params={"host": "db1"})

    rows = ledger_rows(app)
    assert [row["seq"] for row in rows] == [1, 2, 3, 4]
    assert [row["event"] for row in rows] == ["test.first", "test.second", "test.third", "test.fourth"]
    assert rows[0]["prev_hash"] == GENESIS
    for before, after in pairwise(rows):
        assert after["prev_hash"] == before["hash"]
    for row in rows:
        assert row["key_id"] == "test1"
        assert row["hash"] == expected_hash(TEST_AUDIT_KEY, row)
    assert rows[3]["actor_id"] == 7 and rows[3]["actor_name"] == "alice"
    assert rows[3]["params"] == {"host": "db1"}


def test_canonical_time_is_rfc3339_utc_with_microseconds(app: Flask) -> None:
    plus_two = timezone(timedelta(hours=2))
    with app.app_context(), write_transaction() as tx:
        audit.append("test.a", session=tx, at=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=plus_two))
        audit.append("test.b", session=tx, at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
        audit.append("test.c", session=tx)

    rows = ledger_rows(app)
    assert canonical_at(rows[0]["at"]) == "2030-01-02T01:04:05.000006Z"
    assert canonical_at(rows[1]["at"]) == "2030-01-02T03:04:05.000000Z"
    for row in rows:
        document = json.loads(canonical(row))
        assert RFC3339_UTC_MICROS.match(document["at"]), document["at"]
        # The documented encoding is exactly what was signed.
        assert row["hash"] == expected_hash(TEST_AUDIT_KEY, row)
    assert abs(rows[2]["at"] - datetime.now(UTC)) < timedelta(minutes=5)


def test_append_outside_write_transaction_raises(app: Flask) -> None:
    with app.app_context(), pytest.raises(RuntimeError, match="write_transaction"):
        audit.append("test.outside")
    assert ledger_rows(app) == []


def test_append_is_undone_with_the_callers_transaction(app: Flask) -> None:
    with app.app_context():
        with pytest.raises(ZeroDivisionError), write_transaction() as tx:
            audit.append("test.rolled_back", session=tx)
            _ = 1 / 0
        with write_transaction() as tx:
            audit.append("test.kept", session=tx)

    rows = ledger_rows(app)
    assert [(row["seq"], row["event"], row["prev_hash"]) for row in rows] == [(1, "test.kept", GENESIS)]


# --- record() and verify() ------------------------------------------------------------------


def test_recorded_events_verify(app: Flask) -> None:
    with app.app_context():
        audit.record("test.login", actor={"id": 1, "name": "admin"}, source_ip="2001:db8::1", outcome="ok")
        audit.record(
            "test.run",
            command="disk-usage",
            run_id="0b6f2a57-3f0f-4d43-9d4b-6a5b4d1f7a10",
            params={"mount": "/var", "paths": ["/a", "/b"], "n": 3, "ratio": 0.1},
            detail={"exit_code": 0, "excerpt": "héllo ✓ wörld", "nested": {"b": [1, None, True]}},
            user_agent="curl/8 (x)",
            outcome="succeeded",
        )
        audit.record("test.nul", detail={"text": "a\x00b"}, source_ip="10.0.0.1")
        for index in range(3):
            audit.record("test.more", detail={"index": index})

    rows = ledger_rows(app)
    result = verify(app)
    assert result.ok, result.reason
    assert result.checked == len(rows) == 6
    assert result.first_bad_seq is None
    assert result.head == {"seq": 6, "hash": rows[-1]["hash"]}
    assert all(row["hash"] == expected_hash(TEST_AUDIT_KEY, row) for row in rows)
    assert rows[1]["detail"]["excerpt"] == "héllo ✓ wörld"


def test_passwords_never_reach_the_ledger(app: Flask) -> None:
    secret = "hunter2-do-not-store"
    with app.app_context():
        audit.record(
            "test.secret",
            params={"password": secret, "host": "db1"},
            detail={"password": secret, "nested": {"Password": secret}, "items": [{"password": secret}]},
        )

    [row] = ledger_rows(app)
    assert row["params"] == {"password": "***", "host": "db1"}
    assert row["detail"] == {"password": "***", "nested": {"Password": "***"}, "items": [{"password": "***"}]}
    assert secret not in json.dumps(row, default=str)
    assert verify(app).ok


def test_overlong_values_are_clamped_to_their_columns(app: Flask) -> None:
    """A login failure records the submitted name; an overlong one must not make the audit write fail."""
    with app.app_context():
        audit.record(
            "test.long",
            actor={"id": None, "name": "n" * 400},
            source_ip="f" * 60,
            user_agent="u" * 1000,
            command="c" * 200,
        )
    [row] = ledger_rows(app)
    lengths = {column: len(row[column]) for column in ("actor_name", "source_ip", "user_agent", "command")}
    assert lengths == {"actor_name": 150, "source_ip": 45, "user_agent": 300, "command": 100}
    assert row["hash"] == expected_hash(TEST_AUDIT_KEY, row)
    assert verify(app).ok


def test_login_failure_with_a_name_that_grows_under_nfkc_is_audited(app: Flask) -> None:
    """The form allows 150 characters, but NFKC turns U+FDFA into 18: the failure must still be recorded."""
    response = login_response(app.test_client(), "\ufdfa" * 150, "some-wrong-password")
    assert response.status_code != 500
    failures = [row for row in ledger_rows(app) if row["event"] == "auth.login_failed"]
    assert len(failures) == 1
    assert len(failures[0]["actor_name"]) <= 150
    assert verify(app).ok


# --- key rotation -----------------------------------------------------------------------------


def test_rotated_key_still_verifies_old_rows(make_app: Callable[..., Flask]) -> None:
    old_key, new_key = "old-audit-key-" + "a" * 32, "new-audit-key-" + "b" * 32
    before = make_app(AUDIT_KEY_ID="k1", AUDIT_KEY=old_key)
    record_events(before, 3)

    rotated = make_app(AUDIT_KEY_ID="k2", AUDIT_KEY=new_key, AUDIT_KEYS=f"k1:{old_key}")
    record_events(rotated, 2)

    rows = ledger_rows(rotated)
    assert [row["key_id"] for row in rows] == ["k1", "k1", "k1", "k2", "k2"]
    assert all(row["hash"] == expected_hash(old_key, row) for row in rows[:3])
    assert all(row["hash"] == expected_hash(new_key, row) for row in rows[3:])
    assert rows[3]["prev_hash"] == rows[2]["hash"]
    result = verify(rotated)
    assert result.ok and result.checked == 5

    forgot_old_key = make_app(AUDIT_KEY_ID="k2", AUDIT_KEY=new_key)
    result = verify(forgot_old_key)
    assert not result.ok
    assert result.first_bad_seq == 1


def test_a_key_id_cannot_be_pointed_at_another_key(make_app: Callable[..., Flask]) -> None:
    """Rows signed under k1 do not verify when "k1" names a different secret."""
    record_events(make_app(AUDIT_KEY_ID="k1", AUDIT_KEY="first-key-" + "c" * 32), 2)
    swapped = make_app(AUDIT_KEY_ID="k2", AUDIT_KEY="new-key-" + "d" * 32, AUDIT_KEYS="k1:wrong-" + "e" * 32)
    result = verify(swapped)
    assert not result.ok and result.first_bad_seq == 1


# --- pruning ----------------------------------------------------------------------------------


def _old_and_new_rows(app: Flask, old: int, new: int) -> datetime:
    """``old`` rows ten days old, then ``new`` current ones; returns a cut-off between them."""
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    with app.app_context():
        with write_transaction() as tx:
            for index in range(old):
                audit.append("test.old", session=tx, at=ten_days_ago + timedelta(seconds=index))
        for index in range(new):
            audit.record("test.new", detail={"index": index})
    return datetime.now(UTC) - timedelta(days=1)


def test_prune_records_the_cut_and_the_chain_still_verifies(app: Flask) -> None:
    cutoff = _old_and_new_rows(app, old=4, new=3)
    before = ledger_rows(app)
    with app.app_context():
        pruned = audit.prune(cutoff, actor={"id": None, "name": "cli:test"})
        assert pruned is not None

    rows = ledger_rows(app)
    assert [row["seq"] for row in rows] == [5, 6, 7, 8]
    marker = rows[-1]
    assert marker["event"] == "audit.pruned"
    assert marker["detail"]["first_kept_seq"] == 5
    assert marker["detail"]["cut_hash"] == before[3]["hash"] == rows[0]["prev_hash"]
    assert marker["detail"]["deleted"] == 4
    assert marker["hash"] == expected_hash(TEST_AUDIT_KEY, marker)

    result = verify(app)
    assert result.ok, result.reason
    assert result.checked == 4 and result.head == {"seq": 8, "hash": marker["hash"]}

    record_events(app, 2)
    result = verify(app)
    assert result.ok and result.checked == 6


def test_prune_with_nothing_old_writes_nothing(app: Flask) -> None:
    record_events(app, 3)
    with app.app_context():
        assert audit.prune(datetime.now(UTC) - timedelta(days=1)) is None
    assert [row["seq"] for row in ledger_rows(app)] == [1, 2, 3]


def test_old_rows_deleted_by_hand_without_prune_are_detected(app: Flask) -> None:
    cutoff = _old_and_new_rows(app, old=4, new=3)
    assert cutoff > ledger_rows(app)[3]["at"]
    execute_sql(app, "DELETE FROM audit_events WHERE seq <= 4")
    assert [row["seq"] for row in ledger_rows(app)] == [5, 6, 7]
    result = verify(app)
    assert not result.ok and result.first_bad_seq == 1


def test_rows_deleted_by_hand_after_a_prune_are_detected(app: Flask) -> None:
    cutoff = _old_and_new_rows(app, old=4, new=3)
    with app.app_context():
        audit.prune(cutoff)
    execute_sql(app, "DELETE FROM audit_events WHERE seq = 5")
    result = verify(app)
    assert not result.ok
    assert result.first_bad_seq == 5  # the pruned range 1-4 is legitimately gone; 5 is not


def test_deleting_the_prune_marker_is_detected(app: Flask) -> None:
    cutoff = _old_and_new_rows(app, old=4, new=3)
    with app.app_context():
        audit.prune(cutoff)
    record_events(app, 1)
    execute_sql(app, "DELETE FROM audit_events WHERE event = 'audit.pruned'")
    result = verify(app)
    # Without the marker nothing vouches for the cut: the ledger is missing its rows from seq 1.
    assert not result.ok and result.first_bad_seq == 1


# --- flood cap --------------------------------------------------------------------------------


def _wait_for_a_fresh_minute(margin: float = 5.0) -> None:
    """The cap counts per wall-clock minute; start well inside one so the test cannot straddle two."""
    remaining = 60 - time.time() % 60
    if remaining < margin:
        time.sleep(remaining + 0.1)


def test_network_denials_are_capped_per_address_per_minute(make_app: Callable[..., Flask]) -> None:
    app = make_app(AUDIT_FLOOD_PER_MINUTE=5)
    client = app.test_client()
    _wait_for_a_fresh_minute()
    for _ in range(20):
        assert client.get("/", environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 403

    rows = ledger_rows(app)
    assert [row["event"] for row in rows] == ["access.denied_network"] * 5
    assert all(row["source_ip"] == "10.9.9.9" for row in rows)

    gate: audit.FloodGate = app.extensions["gateway.audit_floodgate"]
    gate._window -= 1  # the flood's minute is over
    flood_minute = datetime.fromtimestamp(gate._window * 60, UTC)
    assert client.get("/", environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 403

    rows = ledger_rows(app)
    assert [row["event"] for row in rows[5:]] == ["audit.suppressed", "access.denied_network"]
    summary = rows[5]["detail"]
    assert summary == {
        "window_start": canonical_at(flood_minute),
        "event": "access.denied_network",
        "reason": "denied",
        "by": "address",
        "suppressed": 15,
    }
    assert rows[5]["source_ip"] == "10.9.9.9" and rows[5]["outcome"] == "denied"
    assert verify(app).ok


# --- anchors in the log -----------------------------------------------------------------------


def test_anchor_is_logged_every_n_events_after_commit(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(AUDIT_ANCHOR_EVERY=3)
    caplog.set_level(logging.INFO, logger="gateway.audit.anchor")

    def anchors() -> list[dict[str, Any]]:
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.audit.anchor"]

    with app.app_context():
        with write_transaction() as tx:
            for _ in range(3):
                audit.append("test.event", session=tx)
            assert anchors() == []  # seq 3 exists but is not committed yet
        assert [a["seq"] for a in anchors()] == [3]

        with pytest.raises(ZeroDivisionError), write_transaction() as tx:
            for _ in range(3):
                audit.append("test.rolled_back", session=tx)
            _ = 1 / 0
        assert [a["seq"] for a in anchors()] == [3]  # seq 6 was rolled back: no anchor for it

        for _ in range(4):
            audit.record("test.event")

    rows = ledger_rows(app)
    logged = anchors()
    assert [a["seq"] for a in logged] == [3, 6]
    keyring = audit.Keyring.from_config(app.config)
    for line in logged:
        assert set(line) == {"seq", "hash", "at", "key_id", "sig"}
        assert line["hash"] == rows[line["seq"] - 1]["hash"]
        assert RFC3339_UTC_MICROS.match(line["at"])
        seq, head_hash = audit.parse_anchor(json.dumps(line), keyring)
        assert verify(app, anchor=(seq, head_hash)).ok
