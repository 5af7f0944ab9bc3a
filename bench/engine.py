"""Engine benchmark: overhead of a run against plain subprocess.run, and parallel throughput.

Run: ``.venv/bin/python bench/engine.py`` (about half a minute). Both figures
are measured in the same run on the same machine, as ratios/differences
against a baseline, never as absolute targets in unit tests:

- overhead: p50 of "start a trivial command through the engine and get its
  result" minus p50 of ``subprocess.run(["true"])``; target < 1.5 ms on SQLite
  (WAL, synchronous=FULL).
- throughput, with RUN_WORKERS=32, against the ideal 32 / 0.2 = 160 runs/s
  (target >= 150), measured two ways:
  - 32 clients: 32 threads each starting a ``sleep 0.2`` run and waiting for
    its result, ten times over: 32 runs in flight at any moment, none queued;
  - a burst: 320 ``sleep 0.2`` runs started at once from one thread, so 288
    of them queue and each later one costs a third commit (queued -> running).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gateway.db import migrate
from gateway.identity import accounts

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CATALOGUE = """
commands:
  - name: trivial
    title: Trivial
    kind: shell
    argv: ["true"]
    timeout: 10
  - name: nap
    title: Nap
    kind: shell
    argv: ["sleep", "0.2"]
    timeout: 10
"""


def build_app(directory: Path, catalogue_text: str = CATALOGUE, **settings: str):
    """A migrated SQLite app in ``directory`` and its admin; ``settings`` override the environment."""
    from gateway import create_app

    catalogue = directory / "commands.yaml"
    catalogue.write_text(catalogue_text)
    environ = {
        "GATEWAY_ENV": "testing",
        "SECRET_KEY": "bench-secret-key-" + "x" * 32,
        "AUDIT_KEY": "bench-audit-key-" + "y" * 32,
        "DATABASE_URL": f"sqlite:///{directory / 'bench.db'}",
        "GATEWAY_COMMANDS_FILE": str(catalogue),
        "RUN_WORKERS": "32",
        "AUDIT_ANCHOR_EVERY": "0",
        **settings,
    }
    app = create_app(environ, instance_path=directory / "instance")
    with app.app_context():
        migrate.upgrade()
        user = accounts.create_user("bench", "bench-password-123", is_admin=True)
    return app, user


def run_and_wait(name: str, caller) -> str:
    """Start a run and wait for its result the way the API's ``wait`` does (wake-up, then one read)."""
    from gateway import runs
    from gateway.api.streams import wait_for_finish

    started = runs.start(name, {}, caller)
    run = wait_for_finish(started.run.id, 10.0, started.version)
    return run.status if run is not None else "missing"


def clients_throughput(app, user_id: int, clients: int, rounds: int) -> float:
    """Runs per second of ``clients`` threads, each running ``nap`` and waiting for it ``rounds`` times."""
    from gateway import runs
    from gateway.db.models import User
    from gateway.platform.extensions import db

    ready = threading.Barrier(clients + 1)
    failures: list[str] = []

    def client() -> None:
        with app.app_context():
            caller = runs.Caller(user=db.session.get(User, user_id), source_ip="127.0.0.1")
            db.session.remove()  # no connection held at the barrier (the pool has fewer than 32)
            ready.wait()
            for _ in range(rounds):
                status = run_and_wait("nap", caller)
                if status != "succeeded":
                    failures.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    assert not failures, failures
    return clients * rounds / elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="trivial runs to time")
    parser.add_argument("--parallel-runs", type=int, default=320, help="sleep 0.2 runs for the throughput figure")
    args = parser.parse_args()

    from gateway import runs

    with tempfile.TemporaryDirectory() as tmp:
        app, user = build_app(Path(tmp))
        with app.app_context():
            caller = runs.Caller(user=user, source_ip="127.0.0.1")
            for _ in range(20):  # warm up: pool threads, statement caches
                run_and_wait("trivial", caller)
                subprocess.run(["true"], check=True)
            baseline, engine = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                subprocess.run(["true"], check=True)
                baseline.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                status = run_and_wait("trivial", caller)
                engine.append(time.perf_counter() - t0)
                assert status == "succeeded", status

            clients_rate = clients_throughput(app, user.id, 32, args.parallel_runs // 32)

            t0 = time.perf_counter()
            ids = [runs.start("nap", {}, caller).run.id for _ in range(args.parallel_runs)]
            from gateway.db.models import Run
            from gateway.platform.extensions import db

            while True:
                db.session.commit()
                live = db.session.scalar(
                    db.select(db.func.count()).select_from(Run).where(Run.id.in_(ids), Run.status.in_(runs.LIVE))
                )
                if not live:
                    break
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
            app.extensions["gateway.executor"].shutdown()

    report = {
        "baseline_p50_ms": round(statistics.median(baseline) * 1000, 3),
        "engine_p50_ms": round(statistics.median(engine) * 1000, 3),
        "overhead_p50_ms": round((statistics.median(engine) - statistics.median(baseline)) * 1000, 3),
        "engine_p90_ms": round(percentile(engine, 0.9) * 1000, 3),
        "clients_32_runs_per_second": round(clients_rate, 1),
        "burst_runs": args.parallel_runs,
        "burst_seconds": round(elapsed, 3),
        "burst_runs_per_second": round(args.parallel_runs / elapsed, 1),
        "ideal_runs_per_second": 160.0,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
