"""Replica load test: 2,000 trivial runs from 32 clients over the API, then a full reconciliation.

Run: ``.venv/bin/python bench/replicas.py`` (a few minutes; PostgreSQL on
127.0.0.1:5432 and Redis on 127.0.0.1:6379 as for the tests).  Three setups,
measured one after the other in the same run, each on a fresh database:

- ``sqlite``: the embedded default, one gunicorn process (one worker) on a SQLite file,
  rate-limit counters in memory;
- ``pg-1``: one replica (one gunicorn worker) on PostgreSQL + Redis;
- ``pg-2``: two replicas, each with its own instance directory, on one PostgreSQL
  database + Redis; client ``i`` talks to replica ``i % 2``.

Every client has a bearer token (``--users`` admin accounts, tokens shared
round-robin), keeps its HTTP connection, and loops: ``POST
/api/v1/commands/<trivial>/runs`` with ``wait`` (and a ``GET ...?wait=`` if the
answer was still 202) until the shared count is reached.  The command has a
per-user rate limit far above what the run reaches, so every start consults
the limiter storage (Redis) without 429s dominating.

After the replicas are stopped (SIGTERM: they drain), the database is the
witness: every accepted run id exists once and succeeded, no run is left
live or ``lost``, each run has exactly one ``run.started`` and one
``run.finished`` audit event, the chain verifies, and no answer was a 5xx
(429/409 are counted separately as intended refusals).  Any breach makes the
exit status 1.

Prints a table and one JSON object (``--json-only`` for the JSON alone).
Throughput is accepted-and-finished runs per second of wall time, as ratios
against ``pg-1`` and ``sqlite`` measured in the same run.  Noisy on a shared
machine: compare ratios, and re-run on a quiet one.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from gateway.db import migrate
from gateway.identity import accounts, tokens
from tests.conftest import base_environ, create_pg_database, drop_pg_database, pg_url
from tests.test_replicas import Replica, start_replica

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REDIS = "redis://127.0.0.1:6379/14"
INTENDED = (409, 429)


def catalogue(command: str) -> str:
    return (
        "commands:\n"
        f"  - name: {command}\n"
        "    title: Trivial\n"
        "    kind: shell\n"
        '    argv: ["true"]\n'
        "    timeout: 30\n"
        "    rate_limit: 100000/minute\n"
    )


@dataclass
class Setup:
    name: str
    database_url: str
    replicas: int
    redis: bool


@dataclass
class Tally:
    """What the clients saw."""

    statuses: collections.Counter = field(default_factory=collections.Counter)
    run_ids: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def prepare(setup: Setup, folder: Path, users: int) -> list[str]:
    """Migrate the database and create the accounts and tokens (in this process)."""
    from gateway import create_app
    from gateway.platform.extensions import db

    app = create_app(base_environ(setup.database_url), instance_path=folder / "instance-bench")
    with app.app_context():
        migrate.upgrade("head")
        secrets = []
        for number in range(users):
            user = accounts.create_user(f"bench{number}", f"bench-password-{number:04d}", is_admin=True)
            secrets.append(tokens.create_token(user, name="bench").secret)
        db.session.remove()
        db.engine.dispose()
    return secrets


def client_loop(replica: Replica, command: str, counter: Any, total: int, tally: Tally) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {replica.token}"
    while next(counter) < total:
        started = time.perf_counter()
        try:
            response = session.post(
                f"{replica.base}/api/v1/commands/{command}/runs", json={"params": {}, "wait": 30}, timeout=60
            )
            body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
            run_id = body.get("id")
            while response.status_code == 202 and run_id:
                response = session.get(f"{replica.base}/api/v1/runs/{run_id}", params={"wait": 30}, timeout=60)
                body = response.json()
                if body.get("status") not in ("queued", "running"):
                    break
        except requests.RequestException as exc:
            with tally.lock:
                tally.statuses["exception"] += 1
                tally.errors.append(type(exc).__name__)
            continue
        with tally.lock:
            tally.statuses[response.status_code] += 1
            if run_id and response.status_code in (200, 202):
                tally.run_ids.append(run_id)
                tally.latencies.append(time.perf_counter() - started)
            elif response.status_code >= 500 and len(tally.errors) < 20:
                tally.errors.append(response.text[:200])


def reconcile(database_url: str, tally: Tally, command: str) -> dict[str, Any]:
    """What the database says about the runs the clients were given, and the chain."""
    from gateway import audit, create_app
    from gateway.platform.extensions import db

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id, status, boot_id FROM runs WHERE command = :command"), {"command": command}
            ).all()
            events = connection.execute(
                sa.text(
                    "SELECT run_id, event, count(*) AS n FROM audit_events"
                    " WHERE event IN ('run.started', 'run.finished') AND command = :command GROUP BY run_id, event"
                ),
                {"command": command},
            ).all()
    finally:
        engine.dispose()
    db_status = {row.id: row.status for row in rows}
    accepted = collections.Counter(tally.run_ids)
    per_run: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for row in events:
        per_run[row.run_id][row.event] = int(row.n)
    app = create_app(base_environ(database_url), instance_path=Path(tempfile.mkdtemp(prefix="gw-verify-")))
    with app.app_context():
        verified = audit.verify(db.session, audit.Keyring.from_config(app.config))
        db.session.remove()
        db.engine.dispose()
    status_counts = collections.Counter(db_status.values())
    return {
        "executed_by": dict(collections.Counter(row.boot_id[:8] for row in rows)),  # worker boot id -> runs
        "accepted": len(tally.run_ids),
        "in_database": len(db_status),
        "lost": sorted(set(accepted) - set(db_status))[:10] + [i for i, s in db_status.items() if s == "lost"][:10],
        "duplicated_ids": [run_id for run_id, n in accepted.items() if n > 1][:10],
        "unaccounted_in_database": len(set(db_status) - set(accepted)),
        "statuses": dict(status_counts),
        "bad_audit": [
            run_id
            for run_id in db_status
            if per_run.get(run_id, {}).get("run.started") != 1 or per_run.get(run_id, {}).get("run.finished") != 1
        ][:10],
        "chain_ok": verified.ok,
        "chain_rows": verified.checked,
    }


def stop(replica: Replica) -> None:
    """SIGTERM (drain) and wait; SIGKILL if it takes too long."""
    if replica.process.poll() is None:
        os.killpg(replica.process.pid, signal.SIGTERM)
        try:
            replica.process.wait(timeout=60)
        except Exception:
            replica.kill()


def measure(setup: Setup, runs: int, clients: int, users: int, threads: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"gw-bench-{setup.name}-"))
    command = f"trivial-{uuid.uuid4().hex[:8]}"  # Redis counters outlive a run: a fresh name each time
    (folder / "commands.yaml").write_text(catalogue(command))
    secrets = prepare(setup, folder, users)
    environ = base_environ(
        setup.database_url,
        PATH=os.environ["PATH"],
        GATEWAY_COMMANDS_FILE=str(folder / "commands.yaml"),
        RATELIMIT_STORAGE_URI=REDIS if setup.redis else "memory://",
        AUDIT_ANCHOR_EVERY="0",
        STREAMS_PER_PROCESS=str(threads - 8),  # every client holds a long-poll; keep threads for the rest
        STREAMS_PER_USER=str(threads),  # clients share a few accounts: only the process cap applies here
    )
    replicas: list[Replica] = []
    try:
        for number in range(setup.replicas):
            replicas.append(start_replica(f"r{number}", environ, folder, threads=threads))
        tally = Tally()
        counter = itertools.count()
        workers = [
            threading.Thread(
                target=client_loop,
                args=(
                    Replica(
                        name=replicas[i % len(replicas)].name,
                        base=replicas[i % len(replicas)].base,
                        process=replicas[i % len(replicas)].process,
                        log=replicas[i % len(replicas)].log,
                        token=secrets[i % len(secrets)],
                    ),
                    command,
                    counter,
                    runs,
                    tally,
                ),
            )
            for i in range(clients)
        ]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - began
    finally:
        for replica in replicas:
            stop(replica)
    report = reconcile(setup.database_url, tally, command)
    latencies = sorted(tally.latencies)
    report.update(
        setup=setup.name,
        replicas=setup.replicas,
        seconds=round(elapsed, 2),
        runs_per_second=round(len(tally.run_ids) / elapsed, 1),
        p50_ms=round(statistics.median(latencies) * 1000, 1) if latencies else None,
        p95_ms=round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1) if latencies else None,
        http={str(k): v for k, v in sorted(tally.statuses.items(), key=str)},
        server_errors=sum(v for k, v in tally.statuses.items() if k == "exception" or int(k) >= 500),
        errors=tally.errors[:5],
    )
    report["ok"] = (
        report["accepted"] == runs
        and not report["lost"]
        and not report["duplicated_ids"]
        and report["in_database"] == report["accepted"]
        and report["statuses"] == {"succeeded": runs}
        and not report["bad_audit"]
        and report["chain_ok"]
        and report["server_errors"] == 0
        and len(report["executed_by"]) == setup.replicas  # the load really was spread
        and set(report["http"]) <= {"200", "202", *map(str, INTENDED)}
    )
    shutil.rmtree(folder, ignore_errors=True)
    return report


def table(reports: list[dict[str, Any]]) -> str:
    baseline = {r["setup"]: r["runs_per_second"] for r in reports}
    lines = [
        f"{'setup':8} {'runs/s':>7} {'vs pg-1':>8} {'vs sqlite':>9} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'accepted':>8} {'429/409':>7} {'5xx':>4} {'audit ok':>8} {'chain':>5} {'ok':>3}"
    ]
    for r in reports:

        def ratio(name: str, report: dict[str, Any] = r) -> str:
            base = baseline.get(name)
            return f"{report['runs_per_second'] / base:.2f}x" if base else "-"

        refused = sum(r["http"].get(str(code), 0) for code in INTENDED)
        lines.append(
            f"{r['setup']:8} {r['runs_per_second']:7.1f} {ratio('pg-1'):>8} {ratio('sqlite'):>9} "
            f"{r['p50_ms'] or 0:7.1f} {r['p95_ms'] or 0:7.1f} {r['accepted']:8d} {refused:7d} "
            f"{r['server_errors']:4d} {'yes' if not r['bad_audit'] else 'NO':>8} "
            f"{'yes' if r['chain_ok'] else 'NO':>5} {'yes' if r['ok'] else 'NO':>3}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--users", type=int, default=8, help="accounts (one token each) the clients share")
    parser.add_argument("--threads", type=int, default=48, help="gunicorn threads per replica (one worker each)")
    parser.add_argument("--setups", default="sqlite,pg-1,pg-2", help="comma-separated: sqlite, pg-1, pg-2")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()

    reports = []
    for name in args.setups.split(","):
        scratch = Path(tempfile.mkdtemp(prefix="gw-bench-db-"))
        database = None
        if name == "sqlite":
            setup = Setup(name, f"sqlite:///{scratch / 'gateway.db'}", replicas=1, redis=False)
        elif name in ("pg-1", "pg-2"):
            database = create_pg_database()
            setup = Setup(name, pg_url(database), replicas=int(name[-1]), redis=True)
        else:
            parser.error(f"unknown setup {name!r}")
        try:
            report = measure(setup, args.runs, args.clients, args.users, args.threads)
        finally:
            if database:
                drop_pg_database(database)
            shutil.rmtree(scratch, ignore_errors=True)
        reports.append(report)
        if not args.json_only:
            print(f"{name}: {report['runs_per_second']} runs/s, ok={report['ok']}", file=sys.stderr, flush=True)

    summary = {
        "runs": args.runs,
        "clients": args.clients,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "setups": reports,
        "ok": all(r["ok"] for r in reports),
    }
    if not args.json_only:
        print(table(reports))
    print(json.dumps(summary, default=str))
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
