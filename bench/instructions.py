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
  ``bench/compare.py``;
- ``engine_notify_unmatched``: the ``engine`` loop, the command with ``notify:``
  naming a webhook whose ``on:`` does not match the outcome (nothing enqueued:
  the cost of asking), against ``engine`` (target: at most 5 % more);
- ``engine_notify_sent``: the same with ``on: [succeeded]``, and after each run
  one pass of the delivery worker (claim, signed POST to a local receiver in a
  process of its own, which is not traced, and the recorded outcome): what a
  sent notification adds.

``--kinds engine,engine_notify_unmatched,engine_notify_sent`` measures a subset.
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


NOTIFICATIONS = """
notifications:
  - name: hook
    kind: webhook
    url_env: BENCH_HOOK_URL
    secret_env: BENCH_HOOK_SECRET
    on: [{on}]
"""


def notify_catalogue(on: str) -> str:
    """bench/engine.py's catalogue, its trivial command telling a webhook of outcomes ``on``."""
    from engine import CATALOGUE

    trivial = '    argv: ["true"]\n    timeout: 10\n'
    assert trivial in CATALOGUE
    return CATALOGUE.replace(trivial, trivial + "    notify: [hook]\n", 1) + NOTIFICATIONS.format(on=on)


# A receiver answering 204 to every POST, in a process of its own (valgrind traces only the gateway's).
RECEIVER = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def loop_engine_notify(iterations: int, outcome: str, deliver: bool) -> None:
    """The ``engine`` loop with a ``notify:`` on ``outcome``; with ``deliver``, one worker pass per run."""
    from engine import build_app, run_and_wait

    from gateway import deliveries, runs

    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        os.environ["BENCH_HOOK_URL"] = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/hook"
        os.environ["BENCH_HOOK_SECRET"] = "bench-signing-secret"
        with tempfile.TemporaryDirectory() as tmp:
            app, user = build_app(Path(tmp), notify_catalogue(outcome))
            worker = deliveries.get_worker(app)
            with app.app_context():
                caller = runs.Caller(user=user, source_ip="127.0.0.1")
                for _ in range(iterations):
                    if run_and_wait("trivial", caller) != "succeeded":
                        raise SystemExit("a trivial run did not succeed")
                    if deliver:
                        worker.run_pass()
                if deliver and deliveries.counts() != {"delivered": iterations}:
                    raise SystemExit(f"not every notification was delivered: {deliveries.counts()}")
                if not deliver and deliveries.counts():
                    raise SystemExit("an unmatched notify: enqueued something")
            app.extensions["gateway.executor"].shutdown()
    finally:
        receiver.kill()
        receiver.wait()


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


LOOPS = {
    "engine": loop_engine,
    "subprocess": loop_subprocess,
    "api": loop_api,
    "bare": loop_bare,
    "engine_notify_unmatched": lambda n: loop_engine_notify(n, "failed", deliver=False),
    "engine_notify_sent": lambda n: loop_engine_notify(n, "succeeded", deliver=True),
}


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
    parser.add_argument("--kinds", default=",".join(LOOPS), help="comma list of the loops to measure")
    args = parser.parse_args()
    if args.inner:
        kind, iterations = args.inner
        LOOPS[kind](int(iterations))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    kinds = [kind for kind in args.kinds.split(",") if kind]
    figures = {kind: per_iteration(kind, args.low, args.high) for kind in kinds}
    report: dict[str, object] = {"instructions_per_iteration": figures, "iterations": [args.low, args.high]}
    ratios = {
        "engine_over_subprocess_run": ("engine", "subprocess"),
        "api_over_bare_route": ("api", "bare"),
        "notify_unmatched_over_engine": ("engine_notify_unmatched", "engine"),
        "notify_sent_over_engine": ("engine_notify_sent", "engine"),
    }
    for name, (top, bottom) in ratios.items():
        if top in figures and bottom in figures:
            report[name] = round(figures[top] / figures[bottom], 4)
    if "engine_notify_sent" in figures and "engine" in figures:
        report["instructions_added_by_a_sent_notification"] = figures["engine_notify_sent"] - figures["engine"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
