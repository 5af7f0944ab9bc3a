"""The floor under issue 3's engine overhead: what the required mechanisms alone cost, in one run.

Run: ``.venv/bin/python bench/floor.py`` (about half a minute).  Issue 3 asks
for an engine overhead (a trivial run through the engine, minus
``subprocess.run(["true"])``) under 1.5 ms at p50.  Every run must, by the
same issue and DESIGN.md:

- commit twice with ``synchronous=FULL`` (the run row with ``run.started``
  before anything spawns; the terminal state with ``run.finished``): timed
  here as the same two transactions on a plain ``sqlite3`` connection, no
  SQLAlchemy, no gateway code (``write_path.sqlite3_pair``);
- give the command a parent-death signal without forking the gateway: one
  more exec, through ``gateway-launch`` (``subprocess.run`` of the launcher
  then ``true``, minus ``subprocess.run(["true"])``);
- run the command on a long-lived executor thread and wake the waiter when it
  ends: two thread hand-offs, timed as a ``queue.Queue`` round trip to a
  worker thread and a ``threading.Condition`` wake-up.

Their sum is what the overhead would be with no validation, policy, ledger
hashing, framework or output capture at all; the script prints it next to
the target and the engine's measured overhead (``bench/engine.py``'s loop).
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import build_app, run_and_wait
from write_path import sqlite3_pair

ROUNDS = 300


def p50_ms(action: Callable[[], object], rounds: int = ROUNDS) -> float:
    timings = []
    for _ in range(rounds):
        began = time.perf_counter()
        action()
        timings.append(time.perf_counter() - began)
    return statistics.median(timings) * 1000


def handoff_ms() -> float:
    """A job to a waiting worker thread and its answer back: the two wake-ups every run makes."""
    jobs: queue.Queue[threading.Event | None] = queue.Queue()

    def worker() -> None:
        while (done := jobs.get()) is not None:
            done.set()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()

    def round_trip() -> None:
        done = threading.Event()
        jobs.put(done)
        done.wait()

    try:
        return p50_ms(round_trip)
    finally:
        jobs.put(None)
        thread.join()


def main() -> None:
    from gateway import runs
    from gateway.runners.shell import LAUNCHER

    if LAUNCHER is None:
        raise SystemExit("build gateway-launch first: make .venv/bin/gateway-launch")
    parent = str(os.getpid())
    with tempfile.TemporaryDirectory() as tmp:
        app, user = build_app(Path(tmp))
        with app.app_context():
            caller = runs.Caller(user=user, source_ip="127.0.0.1")
            for _ in range(20):  # warm up
                run_and_wait("trivial", caller)
            baseline = p50_ms(lambda: subprocess.run(["true"], check=True))
            engine = p50_ms(lambda: run_and_wait("trivial", caller))
            launched = p50_ms(lambda: subprocess.run([LAUNCHER, parent, "-", "-", "true"], check=True))
            app.extensions["gateway.executor"].shutdown()
        sqlite3_pair(Path(tmp) / "bench.db", 50)
        commits = statistics.median(sqlite3_pair(Path(tmp) / "bench.db", ROUNDS)) * 1000
    handoffs = handoff_ms()
    floor = commits + (launched - baseline) + handoffs
    report = {
        "subprocess_run_true_p50_ms": round(baseline, 3),
        "two_fsynced_commits_plain_sqlite3_p50_ms": round(commits, 3),
        "launcher_exec_p50_ms": round(launched - baseline, 3),
        "thread_handoffs_p50_ms": round(handoffs, 3),
        "floor_ms": round(floor, 3),
        "target_overhead_ms": 1.5,
        "engine_overhead_p50_ms": round(engine - baseline, 3),
        "left_for_everything_else_ms": round(1.5 - floor, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
