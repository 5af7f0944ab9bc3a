"""Dashboard bench: a board of 10 schedule tiles under concurrent viewers, against /account, in one run.

Run: ``.venv/bin/python bench/dashboard.py [--clients 10,100] [--seconds 10]`` (PostgreSQL on
127.0.0.1:5432 as for the tests).  For each engine (SQLite file, PostgreSQL) one gunicorn
replica (1 worker x 16 threads) serves a catalogue of 10 ``dashboard: true`` schedules, each
run once beforehand (``schedules.run_now``), so every tile has a result.  Signed-in clients
(one session each, keep-alive) loop for ``--seconds`` on: the dashboard page (``GET /``), the
board's conditional refresh (``GET /tiles`` with ``If-None-Match``: 304), and ``/account`` as
the baseline.  Reported per engine and client count: p50/p95 and pages/s of each, errors, and
the runs counted before and after (viewing must start none).  Prints JSON; exit status 1 on
any error or run caused by viewing.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import create_app
from gateway.db import migrate
from gateway.identity import accounts
from tests.conftest import base_environ, create_pg_database, drop_pg_database, pg_url
from tests.test_replicas import start_replica

TILES = 10
CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def catalogue() -> str:
    lines = ["commands:"]
    for i in range(TILES):
        lines.append(f'  - {{name: report-{i}, title: "Report {i}", kind: shell, argv: ["echo", "tile {i} ok"]}}')
    lines.append("schedules:")
    for i in range(TILES):
        lines.append(f'  - {{name: tile-{i}, command: report-{i}, cron: "*/5 * * * *", dashboard: true}}')
    return "\n".join(lines) + "\n"


def prepare(url: str, folder: Path, clients: int, commands: Path) -> None:
    from gateway import schedules
    from gateway.platform.extensions import db
    from gateway.runs import TERMINAL, current_run

    app = create_app(base_environ(url, GATEWAY_COMMANDS_FILE=str(commands)), instance_path=folder / "prep")
    with app.app_context():
        migrate.upgrade("head")
        for number in range(clients):
            accounts.create_user(f"viewer{number}", f"viewer-password-{number:04d}", is_admin=True)
        started = [schedules.run_now(f"tile-{i}", "bench").run.id for i in range(TILES)]
        for run_id in started:
            while (run := current_run(run_id)) is not None and run.status not in TERMINAL:
                time.sleep(0.05)
        db.session.remove()
    app.extensions["gateway.executor"].shutdown(grace=10)


def run_count(url: str) -> int:
    """Runs started by anyone but the scheduler (the replica's own scheduler runs the schedules meanwhile)."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = int(
            connection.execute(sa.text("SELECT COUNT(*) FROM runs WHERE username <> 'system:scheduler'")).scalar_one()
        )
    engine.dispose()
    return count


def signed_in(base: str, number: int) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=30).text
    match = CSRF.search(page)
    assert match, "no CSRF token on /login"
    data = {"csrf_token": match.group(1), "username": f"viewer{number}", "password": f"viewer-password-{number:04d}"}
    response = session.post(f"{base}/login", data=data, timeout=30)
    assert response.status_code == 200 and "Dashboard" in response.text, response.status_code
    return session


def load(base: str, sessions: list[requests.Session], path: str, seconds: float, etag: str | None) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(session: requests.Session) -> None:
        headers = {"X-Gateway-Background": "1", "If-None-Match": etag} if etag else {}
        mine: list[float] = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = session.get(base + path, headers=headers, timeout=60)
                ok = response.status_code == (304 if etag else 200)
            except requests.RequestException as exc:
                ok, response = False, None
                with lock:
                    errors.append(type(exc).__name__)
            mine.append(time.perf_counter() - started)
            if not ok and response is not None:
                with lock:
                    errors.append(str(response.status_code))
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=loop, args=(session,)) for session in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "pages_per_s": round(len(ordered) / seconds, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1) if ordered else None,
        "errors": len(errors),
    }


def measure(engine: str, clients_list: list[int], seconds: float) -> list[dict[str, Any]]:
    database = create_pg_database() if engine == "postgresql" else None
    reports = []
    try:
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            url = pg_url(database) if database else f"sqlite:///{folder / 'bench.db'}"
            commands = folder / "commands.yaml"
            commands.write_text(catalogue())
            most = max(clients_list)
            prepare(url, folder, most, commands)
            environ = base_environ(url, GATEWAY_COMMANDS_FILE=str(commands), LOGIN_RATE_LIMIT="100000/minute")
            replica = start_replica(engine, environ, folder)
            try:
                sessions = [signed_in(replica.base, number) for number in range(most)]
                etag = sessions[0].get(f"{replica.base}/tiles", timeout=30).headers["ETag"]
                for clients in clients_list:
                    before = run_count(url)
                    chosen = sessions[:clients]
                    report: dict[str, Any] = {"engine": engine, "clients": clients}
                    report["dashboard"] = load(replica.base, chosen, "/", seconds, None)
                    report["board_304"] = load(replica.base, chosen, "/tiles", seconds, etag)
                    report["account"] = load(replica.base, chosen, "/account", seconds, None)
                    report["runs_caused_by_viewing"] = run_count(url) - before
                    dash, account = report["dashboard"]["p95_ms"], report["account"]["p95_ms"]
                    report["dashboard_p95_over_account_p95"] = round(dash / account, 2) if dash and account else None
                    reports.append(report)
            finally:
                replica.kill()
    finally:
        if database:
            drop_pg_database(database)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,100")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    clients = [int(value) for value in args.clients.split(",")]
    reports = [r for engine in args.engines.split(",") for r in measure(engine, clients, args.seconds)]
    print(json.dumps(reports, indent=2))
    bad = [
        r
        for r in reports
        if r["runs_caused_by_viewing"] or any(r[k]["errors"] for k in ("dashboard", "board_304", "account"))
    ]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
