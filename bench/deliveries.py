"""Notification delivery latency: from a run's end committing to a local webhook receiver having the request.

Run: ``.venv/bin/python bench/deliveries.py`` (under a minute). SQLite, the real
delivery worker thread (woken by the run end's commit), a signed POST to a
receiver on 127.0.0.1 in a process of its own, which notes the monotonic clock
(shared by the processes of a machine) as each request arrives.  The run's end
is timed by the ``run_finished`` signal, sent right after that commit.
``--runs`` sets how many runs, one after another (each waits for its delivery).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from instructions import notify_catalogue  # noqa: E402

RECEIVER = """
import http.server, json, sys, time
class Noted(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        at = time.monotonic()
        print(json.loads(body)["run"]["id"], at, flush=True)
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Noted)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    from engine import build_app, run_and_wait

    from gateway import deliveries, runs
    from gateway.platform import signals

    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    arrivals: dict[str, float] = {}
    arrived = threading.Condition()

    def read_arrivals() -> None:
        assert receiver.stdout is not None
        for line in receiver.stdout:
            run_id, at = line.split()
            with arrived:
                arrivals[run_id] = float(at)
                arrived.notify_all()

    try:
        assert receiver.stdout is not None
        os.environ["BENCH_HOOK_URL"] = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/hook"
        os.environ["BENCH_HOOK_SECRET"] = "bench-signing-secret"
        threading.Thread(target=read_arrivals, daemon=True).start()
        ended: dict[str, float] = {}
        signals.run_finished.connect(lambda _sender, run, **_: ended.__setitem__(run.id, time.monotonic()), weak=False)
        with tempfile.TemporaryDirectory() as tmp:
            app, user = build_app(Path(tmp), notify_catalogue("succeeded"))
            deliveries.start_worker(app)
            latencies = []
            with app.app_context():
                caller = runs.Caller(user=user, source_ip="127.0.0.1")
                for index in range(args.runs + 20):  # the first 20 warm up (connection pools, caches)
                    run_and_wait("trivial", caller)
                    run_id = max(ended, key=ended.__getitem__)
                    with arrived:
                        if not arrived.wait_for(lambda run_id=run_id: run_id in arrivals, timeout=10):
                            raise SystemExit(f"the delivery of run {run_id} did not arrive")
                    if index >= 20:
                        latencies.append(arrivals[run_id] - ended[run_id])
            deliveries.stop_worker(app)
            app.extensions["gateway.executor"].shutdown()
    finally:
        receiver.kill()
        receiver.wait()
    report = {
        "runs": len(latencies),
        "delivery_latency_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "delivery_latency_p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "delivery_latency_max_ms": round(max(latencies) * 1000, 2),
        "database": "sqlite",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
