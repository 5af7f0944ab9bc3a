"""Chain verification speed: ``audit verify`` in events/s on SQLite and PostgreSQL, in one run.

Run: ``.venv/bin/python bench/audit_verify.py [--rows 200000] [--repeats 3] [--engine both]``.
Fills a fresh database per engine with a valid HMAC chain (the audit viewer
benchmark's bulk fill: each row hashed by ``gateway.audit.row_hash`` as
``append`` does, a third of them with a run.finished-like detail), then times
``gateway.audit.verify`` over the whole ledger ``--repeats`` times and prints
the best and median events/s. Target (issue 5): >= 50,000 events/s on both.
The machine's load moves the absolute figure; compare engines and commits in
the same run. ``verify_events_per_cpu_second`` divides by this process's CPU
time instead (all of the work on SQLite, the Python side on PostgreSQL), which a
shared machine disturbs less.

Measured 2026-11-26 (2 shared cores, quiet at the time; 200,000 rows, median):
SQLite 43,600 -> 97,500 events/s, PostgreSQL 36,400 -> 97,400 events/s (before:
ORM-typed keyset batches and canonical_bytes per row; after: streamed stored
text and the canonical text rebuilt per row).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench.audit_viewer import fill, fresh_app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 50_000


def measure(engine: str, rows: int, repeats: int) -> dict:
    from gateway import audit
    from gateway.platform.extensions import db

    with fresh_app(engine) as app:
        t0 = time.perf_counter()
        fill(app, rows)
        fill_seconds = round(time.perf_counter() - t0, 1)
        rates, cpu_rates = [], []
        with app.app_context():
            keyring = audit.Keyring.from_config(app.config)
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                result = audit.verify(db.session, keyring)
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                db.session.rollback()
                assert result.ok and result.checked == rows, result
                rates.append(rows / elapsed)
                cpu_rates.append(rows / cpu)
    best = round(max(rates))
    return {
        "engine": engine,
        "rows": rows,
        "fill_seconds": fill_seconds,
        "verify_events_per_second_best": best,
        "verify_events_per_second_median": round(statistics.median(rates)),
        # This process's CPU time only (not PostgreSQL's): steadier than wall time on a busy machine.
        "verify_events_per_cpu_second_median": round(statistics.median(cpu_rates)),
        "target": TARGET,
        "meets_target": best >= TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    for engine in engines:
        print(json.dumps(measure(engine, args.rows, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
