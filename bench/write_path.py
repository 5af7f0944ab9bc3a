"""Where the engine's time goes: a run's two write transactions through the gateway vs plain sqlite3.

Run: ``.venv/bin/python bench/write_path.py`` (under a minute). On one
migrated SQLite database (WAL, ``synchronous=FULL``, the real schema with its
audit triggers), in the same run:

- gateway: the engine's own start transaction (``runs.admission._admit``: kill switch,
  run row, ``run.started``) and finish transaction (``runs.ending._record_end``:
  conditional UPDATE ... RETURNING, ``run.finished``), as every run does them;
- sqlite3: the same statements on a plain ``sqlite3`` connection (BEGIN
  IMMEDIATE, the kill-switch read, INSERT run, chain head, INSERT audit row with
  its HMAC, COMMIT; then the conditional UPDATE ... RETURNING, chain head,
  INSERT audit, COMMIT).

Both fsync the same way, so the difference is what the layers above the
driver cost (issue 3's overhead target is 1.5 ms for the whole run). No
process is spawned: this isolates the database path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from engine import build_app

from gateway.catalogue import switches

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def gateway_pair(app, user, rounds: int) -> list[float]:
    from gateway import runs
    from gateway.runners.base import Outcome
    from gateway.runs.admission import _admit
    from gateway.runs.ending import _record_end
    from gateway.runs.model import Job
    from gateway.runs.workers import get_executor

    caller = runs.Caller(user=user, source_ip="127.0.0.1")
    command = switches.current_catalogue().get("trivial")
    executor = get_executor()
    timings = []
    for _ in range(rounds):
        began = time.perf_counter()
        run_id = str(uuid.uuid4())
        run = _admit(command, caller, None, {}, run_id, True, None, executor)
        job = Job(run_id=run_id, command=command, username=user.username, queued=False, started_at=run.started_at)
        outcome = Outcome(status="succeeded", exit_code=0, output_sha256="0" * 64)
        _record_end(job, outcome, None, runs.LIVE, [], None)
        timings.append(time.perf_counter() - began)
    return timings


def sqlite3_pair(path: Path, rounds: int) -> list[float]:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"):
        connection.execute(pragma)
    run_columns = [row[1] for row in connection.execute("PRAGMA table_info(runs)")]
    audit_columns = [row[1] for row in connection.execute("PRAGMA table_info(audit_events)")]
    # Column lists come from the schema itself; the values always travel as parameters.
    insert_run = f"INSERT INTO runs ({','.join(run_columns)}) VALUES ({','.join('?' * len(run_columns))})"
    insert_audit = f"INSERT INTO audit_events ({','.join(audit_columns)}) VALUES ({','.join('?' * len(audit_columns))})"
    key = b"k" * 32

    def now() -> str:
        return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def append(event: str, run_id: str) -> None:
        head = connection.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = head or (0, "0" * 64)
        row = {
            "seq": seq + 1, "at": now(), "event": event, "actor_id": 1, "actor_name": "bench",
            "source_ip": "127.0.0.1", "user_agent": None, "command": "trivial", "run_id": run_id, "params": "{}",
            "outcome": "ok", "detail": json.dumps({"command_sha256": "a" * 64}), "key_id": "bench", "prev_hash": prev,
        }  # fmt: skip
        document = json.dumps(row, sort_keys=True, separators=(",", ":")).encode()
        row["hash"] = hmac.new(key, document, hashlib.sha256).hexdigest()
        connection.execute(insert_audit, [row.get(column) for column in audit_columns])

    timings = []
    for _ in range(rounds):
        began = time.perf_counter()
        run_id = str(uuid.uuid4())
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("SELECT disabled FROM command_states WHERE command = ?", ("trivial",)).fetchone()
        values = dict.fromkeys(run_columns)
        values.update(
            id=run_id, command="trivial", command_sha256="a" * 64, kind="shell", params="{}", user_id=1,
            username="bench", status="running", created_at=now(), started_at=now(), output_bytes=0,
            output_truncated=0, host="bench", boot_id="bench", timeout_seconds=10, lease_expires_at=now(),
        )  # fmt: skip
        connection.execute(insert_run, [values[column] for column in run_columns])
        append("run.started", run_id)
        connection.execute("COMMIT")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "UPDATE runs SET status = 'succeeded', exit_code = 0, finished_at = ?, lease_expires_at = NULL "
            "WHERE id = ? AND status IN ('queued', 'running') RETURNING *",
            (now(), run_id),
        ).fetchone()
        append("run.finished", run_id)
        connection.execute("COMMIT")
        timings.append(time.perf_counter() - began)
    connection.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="start+finish pairs per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, user = build_app(Path(tmp))
        with app.app_context():
            gateway_pair(app, user, 50)  # warm up: statement caches, pool
            gateway = gateway_pair(app, user, args.rounds)
        sqlite3_pair(Path(tmp) / "bench.db", 50)
        plain = sqlite3_pair(Path(tmp) / "bench.db", args.rounds)
    result = {
        "gateway_p50_ms": round(statistics.median(gateway) * 1000, 3),
        "sqlite3_p50_ms": round(statistics.median(plain) * 1000, 3),
        "ratio": round(statistics.median(gateway) / statistics.median(plain), 2),
        "rounds": args.rounds,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
