"""Live output latency: from a command printing a line to an SSE client receiving it.

Run: ``.venv/bin/python bench/sse_latency.py [--lines 100]``. Serves the app on
127.0.0.1 (threaded werkzeug server, SQLite, full auth and audit), starts a
command that prints a timestamped line every 20 ms, follows
``/api/v1/runs/<id>/stream`` with a bearer token, and reports p50/p95 of
(received - printed) over the lines. Target (issue 4): p95 under 100 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from gateway.db import migrate
from gateway.identity import accounts, tokens

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CATALOGUE = """
commands:
  - name: ticker
    title: Prints timestamped lines
    kind: shell
    argv: ["{python}", "-u", "-c", "import sys, time\\nfor i in range(int(sys.argv[1])):\\n    print(repr(time.time()), flush=True)\\n    time.sleep(0.02)", "{{lines}}"]
    params:
      lines: {{type: integer, min: 1, max: 10000, default: 100}}
    timeout: 120
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100)
    args = parser.parse_args()

    from werkzeug.serving import make_server

    from gateway import create_app

    directory = Path(tempfile.mkdtemp(prefix="gw-sse-"))
    (directory / "commands.yaml").write_text(CATALOGUE.format(python=sys.executable))
    app = create_app(
        {
            "GATEWAY_ENV": "testing",
            "SECRET_KEY": "bench-secret-key-" + "x" * 32,
            "AUDIT_KEY": "bench-audit-key-" + "y" * 32,
            "DATABASE_URL": f"sqlite:///{directory / 'gateway.db'}",
            "GATEWAY_COMMANDS_FILE": str(directory / "commands.yaml"),
        },
        instance_path=directory / "instance",
    )
    with app.app_context():
        migrate.upgrade()
        user = accounts.create_user("bench", "bench-password-123", is_admin=True)
        secret = tokens.create_token(user, name="bench").secret
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
    connection.request("POST", "/api/v1/commands/ticker/runs", json.dumps({"params": {"lines": args.lines}}), headers)
    run_id = json.loads(connection.getresponse().read())["id"]
    stream = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
    stream.request("GET", f"/api/v1/runs/{run_id}/stream", headers=headers)
    response = stream.getresponse()

    delays: list[float] = []
    event = None
    buffer = ""
    while True:
        line = response.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "output":
            received = time.time()
            buffer += json.loads(line[6:])["text"]
            *complete, buffer = buffer.split("\n")
            delays.extend(received - float(stamp) for stamp in complete if stamp.strip())
        elif line.startswith("data: ") and event == "end":
            break
    server.shutdown()
    app.extensions["gateway.executor"].shutdown()

    ordered = sorted(delays)
    print(
        json.dumps(
            {
                "lines": len(delays),
                "p50_ms": round(statistics.median(ordered) * 1000, 1),
                "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
                "max_ms": round(ordered[-1] * 1000, 1),
                "target_p95_ms": 100,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
