"""Instructions per run, counted by valgrind: a speed figure that does not move with the machine's load.

Run: ``.venv/bin/python bench/instructions.py`` (about five minutes; needs
``valgrind``, which this machine kind has).  Wall-clock figures here vary by
20 % and more between runs of the same code (other guests share the host), so
a change that saves a tenth of the time is hard to see in ``bench/engine.py``
or ``bench/compare.py``.  ``valgrind --tool=callgrind`` counts the
instructions the process executes: the same code gives the same count whatever
else the machine does.  Counts are not milliseconds (a fsync or a wait costs
few instructions), so this complements the timed benchmarks, never replaces
them.

Each figure is measured as (count after B iterations - count after A) / (B - A),
so start-up (imports, migrations, password hashing) cancels out.  Spawned
commands are not traced: their instructions count on neither side.

- ``engine``: one trivial run through ``runs.start`` and its result (the loop of
  ``bench/engine.py``) against ``subprocess.run(["true"])``;
- ``api``: one ``POST /api/v1/commands/echo/runs`` with ``wait`` (token auth,
  validation, two audited commits, the result) through Flask's test client,
  production settings, against the same request to the bare Flask route of
  ``bench/compare.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "compare"))

ECHO_BODY = json.dumps({"params": {"args": ["Hello", "World!"]}, "wait": 60})


def loop_engine(iterations: int) -> None:
    from engine import build_app, run_and_wait

    from gateway import runs

    with tempfile.TemporaryDirectory() as tmp:
        app, user = build_app(Path(tmp))
        with app.app_context():
            caller = runs.Caller(user=user, source_ip="127.0.0.1")
            for _ in range(iterations):
                if run_and_wait("trivial", caller) != "succeeded":
                    raise SystemExit("a trivial run did not succeed")
        app.extensions["gateway.executor"].shutdown()


def loop_subprocess(iterations: int) -> None:
    for _ in range(iterations):
        subprocess.run(["true"], check=True)  # the baseline, as bench/engine.py runs it


def loop_api(iterations: int) -> None:
    import compare

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        environ = compare.gateway_environ(directory, compare.free_port(), 8)
        token = compare.prepare_gateway(directory, environ)
        for key in [key for key in os.environ if key.startswith(("GATEWAY_", "DATABASE_"))]:
            del os.environ[key]
        os.environ.update(environ)
        from gateway import create_app

        app = create_app()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for _ in range(iterations):
            answer = client.post("/api/v1/commands/echo/runs", data=ECHO_BODY, headers=headers)
            if answer.status_code != 200 or answer.json["status"] != "succeeded":
                raise SystemExit(f"the gateway answered {answer.status_code}: {answer.data[:200]!r}")
        app.extensions["gateway.executor"].shutdown()


def loop_bare(iterations: int) -> None:
    from bare_app import app

    client = app.test_client()
    for _ in range(iterations):
        answer = client.post("/run/echo", json={"args": ["Hello", "World!"]})
        if answer.status_code != 200 or answer.json["returncode"] != 0:
            raise SystemExit(f"the bare route answered {answer.status_code}")


LOOPS = {"engine": loop_engine, "subprocess": loop_subprocess, "api": loop_api, "bare": loop_bare}


def count(kind: str, iterations: int) -> int:
    """Instructions of one process running ``iterations`` of ``kind`` (start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
             "--inner", kind, str(iterations)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            raise SystemExit(f"{kind} x{iterations} failed under valgrind:\n{done.stderr[-3000:]}")
        for line in out.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit(f"no instruction total in callgrind's output for {kind}")


def per_iteration(kind: str, low: int, high: int) -> int:
    return (count(kind, high) - count(kind, low)) // (high - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=int, default=20, help="iterations of the short run (start-up cancels out)")
    parser.add_argument("--high", type=int, default=120, help="iterations of the long run")
    parser.add_argument("--inner", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        kind, iterations = args.inner
        LOOPS[kind](int(iterations))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    figures = {kind: per_iteration(kind, args.low, args.high) for kind in LOOPS}
    report = {
        "instructions_per_iteration": figures,
        "engine_over_subprocess_run": round(figures["engine"] / figures["subprocess"], 2),
        "api_over_bare_route": round(figures["api"] / figures["bare"], 2),
        "iterations": [args.low, args.high],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
