"""Audit export (admin page and ``manage.py audit export``) and ``manage.py audit prune``, on both engines.

CSV cells a spreadsheet would run as a formula are neutralised; the export
of the current filter is streamed (tens of MB with bounded memory); pruning
records ``audit.pruned`` and the chain still verifies afterwards.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from gateway import audit
from gateway.audit.exports import neutralise
from gateway.db.models import AuditEvent
from gateway.db.units import write_transaction
from gateway.platform.extensions import db
from tests import manage_process
from tests.conftest import base_environ

pytestmark = pytest.mark.both_engines  # the ledger: export streams and prune per engine

PROJECT = Path(__file__).resolve().parent.parent
DANGEROUS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tindent", "\rreturn"]


@pytest.fixture
def admin(login):
    return login("admin")


def add(app, rows: list[dict], base: datetime | None = None) -> list[int]:
    base = base or datetime(2024, 5, 1, tzinfo=UTC)
    with app.app_context(), write_transaction() as tx:
        out = []
        for index, fields in enumerate(rows):
            fields = dict(fields)
            name = fields.pop("event")
            out.append(audit.append(name, session=tx, at=base + timedelta(minutes=index), **fields).seq)
        return out


def test_neutralise_prefixes_formula_starts_only():
    for cell in DANGEROUS:
        assert neutralise(cell) == "'" + cell
    for cell in ["plain", "1+1", "a=b", "", "'quoted"]:
        assert neutralise(cell) == cell


def test_csv_export_neutralises_formulas_in_every_text_cell(app, admin, users):
    rows = [
        {
            "event": "test.export",
            "actor": {"id": None, "name": name},
            "command": name,
            "outcome": "ok",
            "params": {"q": name},
        }
        for name in [*DANGEROUS, "harmless"]
    ]
    add(app, rows)
    response = admin.get("/admin/audit/export.csv?event=test.export")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    records = list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))
    assert len(records) == len(rows)
    for record, name in zip(records, [*DANGEROUS, "harmless"], strict=True):
        expected = name if name == "harmless" else "'" + name
        assert record["actor_name"] == expected and record["command"] == expected
        assert json.loads(record["params"]) == {"q": name}  # JSON cells start with "{": not a formula
        assert record["event"] == "test.export" and record["hash"] and record["prev_hash"]
    for record in records:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in record.values())


def test_jsonl_export_carries_exact_values_of_the_filtered_rows(app, admin, users):
    seqs = add(app, [
        {"event": "test.a", "actor": {"id": 7, "name": "=alice"}, "params": {"x": "=1"}, "detail": {"n": 1}},
        {"event": "test.b", "actor": {"id": 8, "name": "bob"}},
        {"event": "test.a", "actor": {"id": 8, "name": "bob"}, "source_ip": "10.1.2.3"},
    ])  # fmt: skip
    response = admin.get("/admin/audit/export.jsonl?event=test.a")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [line["seq"] for line in lines] == [seqs[0], seqs[2]]  # oldest first, filter applied
    assert lines[0]["actor_name"] == "=alice" and lines[0]["params"] == {"x": "=1"} and lines[0]["detail"] == {"n": 1}
    assert lines[0]["at"] == "2024-05-01T00:00:00.000000Z" and lines[1]["source_ip"] == "10.1.2.3"
    with app.app_context():
        stored = db.session.get(AuditEvent, seqs[0])
        assert lines[0]["hash"] == stored.hash and lines[0]["prev_hash"] == stored.prev_hash


def test_export_rejects_unknown_formats_and_bad_filters(app, admin, users):
    assert admin.get("/admin/audit/export.xlsx").status_code == 404
    assert admin.get("/admin/audit/export.csv?since=soon").status_code == 400


def bulk_insert(app, count: int, payload: str) -> None:
    """``count`` rows in one INSERT ... SELECT (no chain: this test measures the export, it does not verify)."""
    with app.app_context():
        start = (db.session.scalar(select(func.max(AuditEvent.seq))) or 0) + 1
        db.session.rollback()
        postgres = db.engine.dialect.name == "postgresql"
        params_sql = "CAST(:params AS JSON)" if postgres else ":params"
        statement = text(
            "WITH RECURSIVE n(i) AS (SELECT CAST(:start AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < :stop) "
            "INSERT INTO audit_events (seq, at, event, actor_id, actor_name, source_ip, user_agent, command, run_id, "
            "params, outcome, detail, key_id, prev_hash, hash) "
            f"SELECT i, :at, 'run.started', NULL, 'user' || CAST(i AS TEXT), '10.0.0.1', 'bench', 'disk-usage', "
            f"NULL, {params_sql}, 'started', NULL, 'test1', :h, :h FROM n"
        )
        with db.engine.begin() as connection:
            connection.execute(
                statement,
                {"start": start, "stop": start + count - 1, "at": datetime(2024, 1, 1), "h": "0" * 64,
                 "params": json.dumps({"pattern": payload})},
            )  # fmt: skip
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) >= count


@pytest.mark.slow
def test_export_of_55_mb_streams_with_bounded_memory(app, admin, users):
    # ~55 MB in each format, far more than the bound below, over 20 of the export's 500-row pages.
    # Fewer, larger rows than a real ledger holds: tracemalloc slows every allocation (per row, not
    # per byte), and the bound is about bytes streamed, not rows.
    count = 10_000
    bulk_insert(app, count, payload="x" * 4800)
    for fmt in ("csv", "jsonl"):
        tracemalloc.start()
        try:
            response = admin.get(f"/admin/audit/export.{fmt}?event=run.started", buffered=False)
            assert response.status_code == 200 and response.is_streamed
            lines = total = 0
            for chunk in response.response:
                lines += chunk.count(b"\n")
                total += len(chunk)
            response.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert lines == count + (1 if fmt == "csv" else 0)
        assert total > 40 * 1024 * 1024
        assert peak < 30 * 1024 * 1024, f"{fmt}: peak {peak / 2**20:.1f} MiB while streaming {total / 2**20:.0f} MiB"


# --- the CLI ------------------------------------------------------------------------------------


def manage(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **base_environ(database_url),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_INSTANCE_PATH": str(tmp_path / "cli-instance"),
    }
    return manage_process.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT, env=environ, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_cli_export_streams_csv_and_jsonl_with_a_time_range(app, users, database_url, tmp_path):
    seqs = add(app, [{"event": "test.cli", "actor": {"id": None, "name": name}} for name in ["-rm", "b", "c", "d"]])
    csv_run = manage(database_url, tmp_path, "audit", "export", "--format", "csv",
                     "--since", "2024-05-01T00:01:00Z", "--until", "2024-05-01T00:03:00")  # fmt: skip
    assert csv_run.returncode == 0, csv_run.stderr
    records = list(csv.DictReader(io.StringIO(csv_run.stdout, newline="")))
    assert [int(r["seq"]) for r in records] == seqs[1:3]
    assert "exported 2 events" in csv_run.stderr

    jsonl_run = manage(database_url, tmp_path, "audit", "export", "--format", "jsonl", "--until", "2024-05-01T00:01Z")
    assert jsonl_run.returncode == 0, jsonl_run.stderr
    lines = [json.loads(line) for line in jsonl_run.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [seqs[0]] and lines[0]["actor_name"] == "-rm"

    everything = manage(database_url, tmp_path, "audit", "export", "--format", "csv")
    assert everything.stdout.count("\n") == 1 + 3 + 4  # header, the fixture's users, these four
    assert ",'-rm," in everything.stdout

    bad = manage(database_url, tmp_path, "audit", "export", "--format", "csv", "--since", "last week")
    assert bad.returncode == 2 and "since" in bad.stderr
    assert manage(database_url, tmp_path, "audit", "export", "--format", "xml").returncode == 2


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_cli_prune_records_the_cut_and_the_chain_still_verifies(app, users, database_url, tmp_path):
    old = datetime.now(UTC) - timedelta(days=400)
    add(app, [{"event": "test.old"} for _ in range(5)], base=old)
    recent = add(app, [{"event": "test.new"} for _ in range(3)], base=datetime.now(UTC) - timedelta(days=1))

    nothing = manage(database_url, tmp_path, "audit", "prune", "--older-than-days", "1000")
    assert nothing.returncode == 0 and "nothing" in nothing.stderr

    pruned = manage(database_url, tmp_path, "audit", "prune", "--older-than-days", "30")
    assert pruned.returncode == 0, pruned.stderr
    report = json.loads(pruned.stdout)
    assert report["deleted"] >= 5
    with app.app_context():
        db.session.rollback()
        assert db.session.scalar(select(func.count()).where(AuditEvent.event == "test.old")) == 0
        assert db.session.scalar(select(func.count()).where(AuditEvent.event == "test.new")) == 3
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "audit.pruned")).one()
        assert event.actor_name.startswith("cli:") and event.detail["first_kept_seq"] == report["first_kept_seq"]
        assert report["first_kept_seq"] <= recent[0]

    verified = manage(database_url, tmp_path, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert manage(database_url, tmp_path, "audit", "prune", "--older-than-days", "0").returncode == 2
