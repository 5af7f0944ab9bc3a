"""Tampering with the ledger by hand is detected and the first bad ``seq`` is named.

The attacker here has direct database access but not the audit key: they drop
the append-only trigger, edit, delete, reorder and re-sign rows with SQL.
Detection is checked through ``audit.verify`` and through the operator CLI
(``manage.py audit verify|anchor``) in a real subprocess.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import audit
from gateway.db.models import AuditEvent
from gateway.platform.extensions import db
from tests import manage_process
from tests.conftest import base_environ
from tests.test_audit_chain import canonical, execute_sql, ledger_rows, record_events, verify

pytestmark = pytest.mark.both_engines  # the ledger: triggers and verification per engine

PROJECT = Path(__file__).resolve().parents[1]
EVENTS = 6


@pytest.fixture
def chain(app: Flask) -> list[dict[str, Any]]:
    """Six intact rows."""
    record_events(app, EVENTS, actor={"id": 1, "name": "alice"}, source_ip="10.0.0.5")
    rows = ledger_rows(app)
    assert [row["seq"] for row in rows] == list(range(1, EVENTS + 1))
    assert verify(app).ok
    return rows


def drop_update_trigger(app: Flask) -> None:
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
    execute_sql(app, "DROP TRIGGER audit_events_no_update" + (" ON audit_events" if postgres else ""))


def trigger_exists(app: Flask) -> bool:
    with app.app_context(), db.engine.connect() as connection:
        if db.engine.dialect.name == "postgresql":
            query = "SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_events_no_update' AND NOT tgisinternal"
        else:
            query = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_events_no_update'"
        return connection.execute(sa.text(query)).scalar_one() == 1


def anchor_for(app: Flask) -> str:
    with app.app_context():
        return json.dumps(audit.current_anchor(db.session, audit.Keyring.from_config(app.config)))


def parsed(app: Flask, line: str) -> tuple[int, str]:
    return audit.parse_anchor(line, audit.Keyring.from_config(app.config))


def assert_broken_at(app: Flask, seq: int, **kwargs: Any) -> None:
    result = verify(app, **kwargs)
    assert not result.ok, "tampering went unnoticed"
    assert result.first_bad_seq == seq, result.reason
    assert result.checked == seq - 1


# --- the trigger ----------------------------------------------------------------------------------


def test_update_trigger_refuses_updates(app: Flask, chain: list[dict[str, Any]]) -> None:
    assert trigger_exists(app)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        execute_sql(app, "UPDATE audit_events SET outcome = 'forged' WHERE seq = 3")
    assert ledger_rows(app) == chain
    drop_update_trigger(app)
    assert not trigger_exists(app)


# --- tamper cases, each naming the first bad seq -----------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("outcome", "forged"),
        ("actor_name", "mallory"),
        ("source_ip", "192.0.2.66"),
        ("event", "test.other"),
        ("detail", {"index": 99}),
        ("at", "shift"),
    ],
)
def test_edited_field_is_detected(app: Flask, chain: list[dict[str, Any]], column: str, value: Any) -> None:
    drop_update_trigger(app)
    if column == "at":
        value = chain[2]["at"] + timedelta(microseconds=1)
    with app.app_context():
        statement = sa.update(AuditEvent).where(AuditEvent.seq == 3).values({column: value})
        db.session.execute(statement)
        db.session.commit()
    assert ledger_rows(app)[2][column] == value
    assert_broken_at(app, 3)


@pytest.mark.parametrize("seq", [1, 4], ids=["first", "middle"])
def test_deleted_row_is_detected(app: Flask, chain: list[dict[str, Any]], seq: int) -> None:
    execute_sql(app, "DELETE FROM audit_events WHERE seq = :seq", seq=seq)
    assert_broken_at(app, seq)


def test_deleted_last_row_is_only_detected_with_an_anchor(app: Flask, chain: list[dict[str, Any]]) -> None:
    anchor = anchor_for(app)
    execute_sql(app, "DELETE FROM audit_events WHERE seq = :seq", seq=EVENTS)
    # Without an anchor a truncated tail looks like a shorter, intact chain: that is why anchors exist.
    assert verify(app).ok
    assert_broken_at(app, EVENTS, anchor=parsed(app, anchor))


def test_replaced_last_row_is_detected_with_an_anchor(app: Flask, chain: list[dict[str, Any]]) -> None:
    anchor = anchor_for(app)
    execute_sql(app, "DELETE FROM audit_events WHERE seq = :seq", seq=EVENTS)
    record_events(app, 1)  # the application itself writes a different, validly signed row EVENTS
    assert verify(app).ok
    assert_broken_at(app, EVENTS, anchor=parsed(app, anchor))


def test_reordered_rows_are_detected(app: Flask, chain: list[dict[str, Any]]) -> None:
    drop_update_trigger(app)
    for statement in (
        "UPDATE audit_events SET seq = -1 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = -1",
    ):
        execute_sql(app, statement)
    rows = ledger_rows(app)
    assert [row["detail"]["index"] for row in rows] == [0, 1, 3, 2, 4, 5]
    assert_broken_at(app, 3)


def test_row_resigned_with_another_key_is_detected(app: Flask, chain: list[dict[str, Any]]) -> None:
    """The attacker rewrites row 3 and re-chains everything after it, but without the real key."""
    drop_update_trigger(app)
    wrong_key = b"attacker-guess-" + b"z" * 32
    prev_hash = chain[1]["hash"]
    for row in chain[2:]:
        row = {**row, "prev_hash": prev_hash}
        if row["seq"] == 3:
            row["outcome"] = "forged"
        message = f"{row['prev_hash']}\n{row['seq']}\n".encode() + canonical(row)
        row["hash"] = hmac.new(wrong_key, message, hashlib.sha256).hexdigest()
        execute_sql(
            app,
            "UPDATE audit_events SET outcome = :outcome, prev_hash = :prev_hash, hash = :hash WHERE seq = :seq",
            outcome=row["outcome"],
            prev_hash=row["prev_hash"],
            hash=row["hash"],
            seq=row["seq"],
        )
        prev_hash = row["hash"]
    rows = ledger_rows(app)
    assert all(after["prev_hash"] == before["hash"] for before, after in pairwise(rows))
    assert_broken_at(app, 3)


def test_anchor_with_a_forged_signature_is_refused(app: Flask, chain: list[dict[str, Any]]) -> None:
    anchor = json.loads(anchor_for(app))
    assert parsed(app, json.dumps(anchor)) == (EVENTS, chain[-1]["hash"])
    anchor["seq"] = EVENTS - 1  # point the anchor at a shorter chain
    with pytest.raises(audit.AnchorError):
        parsed(app, json.dumps(anchor))


# --- the operator CLI ----------------------------------------------------------------------------------


def manage(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**base_environ(database_url), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return manage_process.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_cli_verify_exit_codes(app: Flask, chain: list[dict[str, Any]], database_url: str) -> None:
    intact = manage(database_url, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    report = json.loads(intact.stdout)
    assert report == {
        "ok": True,
        "checked": EVENTS,
        "first_bad_seq": None,
        "head": {"seq": EVENTS, "hash": chain[-1]["hash"]},
    }

    execute_sql(app, "DELETE FROM audit_events WHERE seq = 4")
    broken = manage(database_url, "audit", "verify")
    assert broken.returncode == 1, broken.stderr
    assert json.loads(broken.stdout)["first_bad_seq"] == 4
    assert "seq 4" in broken.stderr


@pytest.mark.slow
def test_cli_anchor_catches_a_truncated_tail(app: Flask, chain: list[dict[str, Any]], database_url: str) -> None:
    printed = manage(database_url, "audit", "anchor")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert len(lines) == 1
    anchor = json.loads(lines[0])
    assert set(anchor) == {"seq", "hash", "at", "key_id", "sig"}
    assert (anchor["seq"], anchor["hash"], anchor["key_id"]) == (EVENTS, chain[-1]["hash"], "test1")

    assert manage(database_url, "audit", "verify", "--anchor", lines[0]).returncode == 0
    execute_sql(app, "DELETE FROM audit_events WHERE seq = :seq", seq=EVENTS)
    truncated = manage(database_url, "audit", "verify", "--anchor", lines[0])
    assert truncated.returncode == 1, truncated.stderr
    assert json.loads(truncated.stdout)["first_bad_seq"] == EVENTS
    assert f"seq {EVENTS}" in truncated.stderr


@pytest.mark.parametrize(
    "line",
    ["not json", '{"seq": 1}', "[1, 2]", "forged-signature"],
)
@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_cli_verify_with_a_bad_anchor_could_not_check(
    app: Flask, chain: list[dict[str, Any]], database_url: str, line: str
) -> None:
    if line == "forged-signature":
        anchor = json.loads(anchor_for(app))
        anchor["hash"] = "f" * 64
        line = json.dumps(anchor)
    result = manage(database_url, "audit", "verify", "--anchor", line)
    assert result.returncode == 2, result.stderr
    assert "could not check" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "database_url",
    ["sqlite:////nonexistent-directory/gateway.db", "postgresql://postgres@127.0.0.1:1/nothing"],
    ids=["sqlite", "postgresql"],
)
@pytest.mark.parametrize("command", ["verify", "anchor"])
@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_cli_without_a_database_could_not_check(database_url: str, command: str) -> None:
    result = manage(database_url, "audit", command)
    assert result.returncode == 2, result.stderr
    assert "could not" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
