"""Dashboard bench: a board of 10 schedule tiles under concurrent viewers, against /account, in one run.

Run: ``.venv/bin/python bench/dashboard.py [--clients 10,100] [--seconds 10]`` (PostgreSQL on
127.0.0.1:5432 as for the tests).  For each engine (SQLite file, PostgreSQL) one gunicorn
replica (1 worker x 16 threads) serves a catalogue of 10 ``dashboard: true`` schedules, each
run once beforehand (``schedules.run_now``), so every tile has a result.  Signed-in clients
(one session each, keep-alive) all load one page at a time: the dashboard page (``GET /``), the
board's conditional refresh (``GET /tiles`` with ``If-None-Match``: 304), and ``/account`` as
the baseline, in ``--rounds`` alternating phases that add up to ``--seconds`` per page, so a
drift in the machine's load (other processes) reaches all three alike.  Reported per engine and client count: p50/p95 and pages/s of each, errors, and
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
from dataclasses import dataclass, field
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


PAGES = {"dashboard": "/", "board_304": "/tiles", "account": "/account"}


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: Phase) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.seconds += other.seconds

    def report(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "requests": len(ordered),
            "pages_per_s": round(len(ordered) / self.seconds, 1) if self.seconds else None,
            "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1) if ordered else None,
            "errors": len(self.errors),
        }


def load(base: str, sessions: list[requests.Session], path: str, seconds: float, etag: str | None) -> Phase:
    """Every client on one page for ``seconds``: its latencies and failures."""
    phase = Phase()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(session: requests.Session) -> None:
        seen = etag  # like the page's script: a changed board (a schedule ran meanwhile) is a 200 and a new ETag
        mine: list[float] = []
        while time.monotonic() < deadline:
            headers = {"X-Gateway-Background": "1", "If-None-Match": seen} if seen else {}
            started = time.perf_counter()
            try:
                response = session.get(base + path, headers=headers, timeout=60)
                failure = (
                    None if response.status_code in ((200, 304) if seen else (200,)) else str(response.status_code)
                )
                if seen and response.status_code == 200:
                    seen = response.headers.get("ETag", seen)
            except requests.RequestException as exc:
                failure = type(exc).__name__
            mine.append(time.perf_counter() - started)
            if failure:
                with lock:
                    phase.errors.append(failure)
        with lock:
            phase.latencies.extend(mine)

    threads = [threading.Thread(target=loop, args=(session,)) for session in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = seconds
    return phase


def measure(engine: str, clients_list: list[int], seconds: float, rounds: int) -> list[dict[str, Any]]:
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
                    phases = {key: Phase() for key in PAGES}
                    for _ in range(rounds):  # alternating phases: a drift in the machine's load touches all three
                        for key, path in PAGES.items():
                            phase = load(
                                replica.base, chosen, path, seconds / rounds, etag if key == "board_304" else None
                            )
                            phases[key].add(phase)
                    report.update({key: phase.report() for key, phase in phases.items()})
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
    parser.add_argument("--rounds", type=int, default=5, help="alternating phases per page (each seconds/rounds)")
    args = parser.parse_args()
    clients = [int(value) for value in args.clients.split(",")]
    reports = [r for engine in args.engines.split(",") for r in measure(engine, clients, args.seconds, args.rounds)]
    print(json.dumps(reports, indent=2))
    bad = [
        r
        for r in reports
        if r["runs_caused_by_viewing"] or any(r[k]["errors"] for k in ("dashboard", "board_304", "account"))
    ]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
