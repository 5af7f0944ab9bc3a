"""Schedule bench: N schedules due in the same minute, two replicas (processes) on PostgreSQL.

Run: ``.venv/bin/python bench/schedules.py [--schedules 1000] [--replicas 2]`` (PostgreSQL on
127.0.0.1:5432 as for the tests).  Each replica is a process with its own app and its own
scheduler thread, on one fresh database; their clocks are shifted (the same shift in each) so
the next minute boundary comes two seconds after they start: nobody waits a real minute.  Every
schedule is ``* * * * *`` on ``true``.

The database is the witness: each occurrence claimed exactly once (the primary key), every one
started (none missed or refused), each run succeeded.  Lag = the claim's time minus the
scheduled time, per replica (p50, p95, max), with the runs each replica took.  Prints JSON;
exit status 1 on any breach.  Noisy on a shared machine: compare on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import create_app
from gateway.db import migrate
from tests.conftest import base_environ, create_pg_database, drop_pg_database, pg_url

REPLICA = """
import sys, time
from datetime import UTC, datetime, timedelta
from gateway import create_app
from gateway.schedules import Scheduler
from tests.conftest import base_environ

url, catalogue, instance, offset, until = sys.argv[1:6]
app = create_app(base_environ(url, GATEWAY_COMMANDS_FILE=catalogue, RUN_WORKERS="16"), instance_path=instance)
shift = timedelta(seconds=float(offset))
scheduler = Scheduler(app, clock=lambda: datetime.now(UTC) + shift)
scheduler.start()
time.sleep(max(0.0, float(until) - time.time()))
scheduler.stop()
app.extensions["gateway.executor"].shutdown(grace=60)
"""


def catalogue(count: int) -> str:
    lines = ["commands:", "  - name: trivial", "    title: Trivial", "    kind: shell", '    argv: ["true"]']
    lines.append("schedules:")
    lines += [f'  - {{name: s{i:04d}, command: trivial, cron: "* * * * *"}}' for i in range(count)]
    return "\n".join(lines) + "\n"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def measure(count: int, replicas: int, window: float) -> dict[str, object]:
    database = create_pg_database()
    url = pg_url(database)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "commands.yaml"
            path.write_text(catalogue(count))
            app = create_app(base_environ(url, GATEWAY_COMMANDS_FILE=str(path)), instance_path=Path(folder) / "i")
            with app.app_context():
                migrate.upgrade("head")
            now = time.time()
            boundary = (int(now // 60) + 1) * 60
            start = now + 6  # the replicas have started by then; the boundary comes 2 s later
            offset = boundary - (start + 2)
            # First seen at their start: the minute that begins 2 s later is every schedule's first occurrence.
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", REPLICA, url, str(path), str(Path(folder) / f"r{i}"), str(offset),
                     str(start + 2 + window)],
                    cwd=Path(__file__).resolve().parent.parent,
                )
                for i in range(replicas)
            ]  # fmt: skip
            codes = [proc.wait(window + 180) for proc in procs]
            engine = sa.create_engine(url)
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.text(
                        "SELECT o.schedule, o.scheduled_for, o.claimed_at, o.outcome, r.status, r.boot_id"
                        " FROM schedule_occurrences o LEFT JOIN runs r ON r.id = o.run_id"
                    )
                ).all()
            engine.dispose()
    finally:
        drop_pg_database(database)
    due = {row.scheduled_for for row in rows}
    first = min(due) if due else None
    in_first = [row for row in rows if row.scheduled_for == first]
    by_replica: dict[str, list[float]] = {}
    for row in in_first:
        lag = (row.claimed_at.timestamp() + offset) - row.scheduled_for.timestamp()
        by_replica.setdefault(row.boot_id or "-", []).append(lag)
    lags = [lag for values in by_replica.values() for lag in values]
    breaches = []
    if len(in_first) != count:
        breaches.append(f"{len(in_first)} of {count} occurrences of the first minute claimed")
    if any(row.outcome != "started" or row.status != "succeeded" for row in in_first):
        breaches.append("an occurrence was missed, refused, or its run did not succeed")
    if any(code != 0 for code in codes):
        breaches.append(f"replica exit codes {codes}")
    return {
        "schedules": count,
        "replicas": replicas,
        "claimed": len(in_first),
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p95_s": round(percentile(lags, 0.95), 3),
        "lag_max_s": round(max(lags), 3) if lags else None,
        "per_replica": {
            boot[:8]: {"runs": len(values), "lag_p95_s": round(percentile(values, 0.95), 3)}
            for boot, values in by_replica.items()
        },
        "breaches": breaches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--window", type=float, default=50.0, help="seconds the replicas schedule after the boundary")
    args = parser.parse_args()
    report = measure(args.schedules, args.replicas, args.window)
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["breaches"] else 0)


if __name__ == "__main__":
    main()
