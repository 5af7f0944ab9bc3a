"""``gateway_audit_chain_ok`` means the same thing on every replica: the last recorded scheduled verification.

The CronJob's ``manage.py audit verify --record`` runs in a process of its own
(as here: a real subprocess) and appends ``audit.verified``; a gateway that
never verified anything itself reports that result on ``/metrics``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from config import PROJECT_ROOT
from gateway import audit
from gateway.audit import status as chain_status
from gateway.db.models import AuditEvent
from gateway.db.units import write_transaction
from gateway.platform.extensions import db
from tests import manage_process
from tests.conftest import base_environ, create_pg_database, drop_pg_database, pg_url
from tests.test_metrics import parse, scrape, value
from tests.test_replicas import admin_token, replica_environ, start_replica

pytestmark = pytest.mark.both_engines  # the ledger's chain status, recorded and read per engine

OK, STAMP = "gateway_audit_chain_ok", "gateway_audit_chain_verified_timestamp_seconds"


def manage_verify(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CronJob's command, in its own process."""
    environ = {**base_environ(database_url), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return manage_process.run(
        [sys.executable, "manage.py", "audit", "verify", *args],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_events(app: Flask, count: int) -> None:
    with app.app_context():
        for number in range(count):
            audit.record("test.event", detail={"n": number})


def verified_events(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        db.session.rollback()
        return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.event == "audit.verified")))


def fresh_scrape(app: Flask) -> dict:
    """A scrape that does not take this process's cached answer (another process just recorded one)."""
    chain_status.forget(app)
    return scrape(app.test_client())


def test_no_series_until_a_verification_is_recorded(app: Flask) -> None:
    write_events(app, 2)
    samples = fresh_scrape(app)
    assert (OK, ()) not in samples and (STAMP, ()) not in samples  # absent() alerts; 0 would claim a failure
    plain = manage_verify(app.config["SQLALCHEMY_DATABASE_URI"])
    assert plain.returncode == 0, plain.stderr
    assert verified_events(app) == []  # without --record, verify only reads (e.g. on a restored backup)
    assert (OK, ()) not in fresh_scrape(app)


def test_a_recorded_verification_is_reported_by_a_process_that_never_verified(app: Flask) -> None:
    database_url = app.config["SQLALCHEMY_DATABASE_URI"]
    write_events(app, 3)
    before = time.time()
    intact = manage_verify(database_url, "--record")
    assert intact.returncode == 0, intact.stderr
    (event,) = verified_events(app)
    assert event.outcome == "ok" and event.actor_name.startswith("cli:")
    assert event.detail == {
        "ok": True, "checked": 3, "from_seq": 1, "to_seq": 3, "first_bad_seq": None, "reason": None,
        "anchor_seq": None,
    }  # fmt: skip
    samples = fresh_scrape(app)
    assert value(samples, OK) == 1
    assert before - 1 <= value(samples, STAMP) <= time.time() + 1

    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM audit_events WHERE seq = 2"))  # updates are refused by a trigger
    broken = manage_verify(database_url, "--record")
    assert broken.returncode == 1, broken.stderr
    latest = verified_events(app)[-1]
    assert latest.outcome == "broken"
    assert (latest.detail["first_bad_seq"], latest.detail["to_seq"]) == (2, 1)
    assert value(fresh_scrape(app), OK) == 0

    with app.app_context():
        assert not audit.verify(db.session, audit.Keyring.from_config(app.config)).ok  # still broken at seq 2


def test_scrapes_share_a_cached_answer_for_a_few_seconds(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    # The window is widened for the first half: starting manage.py may itself take longer than
    # the real CACHE_SECONDS on a loaded machine, and the point is what happens inside the window.
    monkeypatch.setattr(chain_status, "CACHE_SECONDS", 3600.0)
    write_events(app, 1)
    assert manage_verify(app.config["SQLALCHEMY_DATABASE_URI"], "--record").returncode == 0
    client = app.test_client()
    first = value(fresh_scrape(app), STAMP)
    assert manage_verify(app.config["SQLALCHEMY_DATABASE_URI"], "--record").returncode == 0
    assert value(scrape(client), STAMP) == first  # read at most once per CACHE_SECONDS per process
    monkeypatch.setattr(chain_status, "CACHE_SECONDS", 0.0)  # the window has passed: read again
    assert value(scrape(client), STAMP) > first


def test_a_forged_ok_record_reports_zero(app: Flask) -> None:
    """Someone who can write the table but lacks the audit key cannot turn the gauge green."""
    write_events(app, 1)
    with app.app_context(), write_transaction() as session:
        head = session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
        session.execute(
            sa.insert(AuditEvent.__table__).values(
                seq=head.seq + 1, at=head.at, event="audit.verified", outcome="ok", detail={"ok": True},
                key_id="test1", prev_hash=head.hash, hash="f" * 64,
            )
        )  # fmt: skip
    assert value(fresh_scrape(app), OK) == 0


def test_verify_and_record_in_process_is_seen_at_once(app: Flask) -> None:
    """The process that records drops its own cached answer."""
    write_events(app, 1)
    client = app.test_client()
    assert (OK, ()) not in scrape(client)
    with app.app_context():
        assert chain_status.verify_and_record().ok
    assert value(scrape(client), OK) == 1


# --- every replica, every worker ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_every_replica_and_worker_reports_the_cronjob_result(pg_template: str, tmp_path: Path) -> None:
    name = create_pg_database(template=pg_template)
    database_url = pg_url(name)
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(textwrap.dedent('commands:\n  - {name: quick, title: Q, kind: shell, argv: ["true"]}\n'))
    token = admin_token(database_url, tmp_path)  # writes a few audit events
    replicas = []
    try:
        for replica_name in ("a", "b"):
            multiproc = tmp_path / f"prom-{replica_name}"
            multiproc.mkdir()
            environ = replica_environ(
                database_url,
                catalogue,
                PROMETHEUS_MULTIPROC_DIR=str(multiproc),
                METRICS_ALLOWED_NETWORKS="127.0.0.1/32",
            )
            replicas.append(start_replica(replica_name, environ, tmp_path, token, workers=2))
        assert all(OK not in requests.get(r.base + "/metrics", timeout=5).text for r in replicas)
        recorded = manage_verify(database_url, "--record")
        assert recorded.returncode == 0, recorded.stderr
        checked = json.loads(recorded.stdout)["checked"]
        assert checked >= 1
        time.sleep(chain_status.CACHE_SECONDS + 0.5)
        stamps = set()
        for replica in replicas:
            for _ in range(4):  # whichever worker answers
                body = requests.get(replica.base + "/metrics", timeout=5).text
                families = [family.name for family in text_string_to_metric_families(body)]
                assert families.count(OK) == 1, "one series, not one per worker file"
                samples = parse(body)
                assert value(samples, OK) == 1
                stamps.add(value(samples, STAMP))
        assert len(stamps) == 1  # the same record, read by every replica
    finally:
        for replica in replicas:
            replica.kill()
        drop_pg_database(name)
