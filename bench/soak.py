"""Soak: a real gunicorn gateway under N concurrent clients for M minutes, then an audit reconciliation.

Run: ``.venv/bin/python bench/soak.py`` (16 clients x 2 minutes on SQLite;
``--postgres`` for a fresh database on ``GATEWAY_TEST_PG_URL``, dropped
afterwards; ``--clients``, ``--minutes``, ``--workers``, ``--threads``,
``--json FILE``).  Loopback only, bounded in time: the clients stop at the
deadline, the runs they started are awaited (at most ``--settle`` seconds), the
server is stopped with SIGTERM (its drain), and then the database is checked.

The clients mix what real callers do: runs answered within ``wait``, runs
long-polled to the end, runs streamed over SSE to the ``end`` event, runs
cancelled mid-way, cached status reports, a command at its concurrency limit,
and bad requests (validation errors, unknown commands, bad tokens, malformed
JSON, a ``wait`` out of range).  An answer outside the statuses expected for
that action is an error.

Reconciliation (exit status 1 if any fails): every run a client was told about
exists; every run has exactly one ``run.started`` and one ``run.finished``
event; no run is left ``queued`` or ``running``; ``manage.py audit verify``
exits 0; server RSS (gunicorn master + workers, sampled every
``--sample-seconds``) did not keep growing: the mean of the last quarter of
the samples is within 25 % (+ 16 MiB) of the mean of the second quarter
(the first quarter is warm-up).  A summary is printed, then one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from gateway.db import migrate
from gateway.identity import accounts, groups, tokens

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("GATEWAY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
LIVE = ("queued", "running")
STAFF = 4

CATALOGUE = """
commands:
  - name: quick
    title: Prints a line
    kind: shell
    argv: ["echo", "soak {word}"]
    params:
      word: {type: string, pattern: "[a-z0-9]{1,16}", default: hello}
    timeout: 10
  - name: count
    title: Prints a line every 50 ms
    kind: shell
    argv: ["sh", "-c", "i=0; while [ $i -lt \\"$1\\" ]; do echo line $i; i=$((i+1)); sleep 0.05; done", "sh", "{n}"]
    params:
      n: {type: integer, min: 1, max: 100, default: 20}
    timeout: 20
  - name: sleepy
    title: Sleeps until cancelled
    kind: shell
    argv: ["sleep", "30"]
    timeout: 40
  - name: status
    title: A cached status report
    kind: shell
    argv: ["date", "+%s"]
    cache_seconds: 2
    timeout: 10
  - name: single
    title: One at a time
    kind: shell
    argv: ["sleep", "0.5"]
    concurrency: 1
    timeout: 10
  - name: fails
    title: Exits with 3
    kind: shell
    argv: ["sh", "-c", "echo bad >&2; exit 3"]
    timeout: 10
"""
COMMANDS = ("quick", "count", "sleepy", "status", "single", "fails")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- set-up -------------------------------------------------------------------------------------


def environ_for(database_url: str, catalogue: Path, instance: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_ENV": "testing",
        "SECRET_KEY": "soak-secret-key-" + "x" * 32,
        "AUDIT_KEY": "soak-audit-key-" + "y" * 32,
        "AUDIT_KEY_ID": "soak1",
        "DATABASE_URL": database_url,
        "GATEWAY_COMMANDS_FILE": str(catalogue),
        "GATEWAY_INSTANCE_PATH": str(instance),
        "ALLOWED_NETWORKS": "127.0.0.0/8",
        "RATELIMIT_STORAGE_URI": "memory://",
        "RUN_HEARTBEAT_SECONDS": "2",
    }


def prepare(environ: dict[str, str]) -> dict[str, str]:
    """Migrate, create an admin and staff users with a group granted every command; return their tokens."""
    from gateway import create_app
    from gateway.platform.extensions import db

    app = create_app(dict(environ), instance_path=Path(environ["GATEWAY_INSTANCE_PATH"]))
    issued = {}
    with app.app_context():
        migrate.upgrade("head")
        admin = accounts.create_user("soak-admin", "soak-admin-password-1", is_admin=True)
        issued["admin"] = tokens.create_token(admin, name="soak").secret
        groups.create_group("soak")
        for command in COMMANDS:
            groups.add_grant("soak", command)
        for index in range(STAFF):
            user = accounts.create_user(f"soak{index}", f"soak-password-{index}-1")
            groups.add_member("soak", user.username)
            issued[f"soak{index}"] = tokens.create_token(user, name="soak").secret
        db.session.remove()
        db.engine.dispose()
    return issued


def create_pg_database() -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"gw_soak_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return name, sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(name: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


# --- the server and its memory ---------------------------------------------------------------------


class Server:
    def __init__(self, environ: dict[str, str], workers: int, threads: int, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        argv += ["--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", str(threads)]
        env = {**environ, "RUN_SHUTDOWN_GRACE_SECONDS": "10"}
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited at boot:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SystemExit("gunicorn did not become ready")

    def pids(self) -> list[int]:
        """The master and its workers."""
        found = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == self.process.pid:
                    found.append(int(entry.name))
        return found

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def stop(self, timeout: float = 60) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


def sample_rss(server: Server, every: float, stop: threading.Event, samples: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    while True:
        samples.append((round(time.monotonic() - started, 1), server.rss_bytes()))
        if stop.wait(every):
            return


# --- the clients -----------------------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    actions: collections.Counter = field(default_factory=collections.Counter)
    statuses: dict[str, collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    errors: list[str] = field(default_factory=list)
    run_ids: set[str] = field(default_factory=set)
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))

    def record(self, action: str, status: int, expected: tuple[int, ...], seconds: float, note: str = "") -> bool:
        with self.lock:
            self.actions[action] += 1
            self.statuses[action][status] += 1
            self.latencies[action].append(seconds)
            if status not in expected:
                self.errors.append(f"{action}: HTTP {status} (expected {expected}) {note[:200]}")
                return False
        return True

    def accepted(self, run_id: str) -> None:
        with self.lock:
            self.run_ids.add(run_id)


class Client:
    def __init__(self, base: str, token: str, tally: Tally, rng: random.Random):
        self.base = base
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.tally = tally
        self.rng = rng

    def call(self, action: str, method: str, path: str, expected: tuple[int, ...], **kwargs: Any):
        kwargs.setdefault("timeout", 90)
        started = time.monotonic()
        try:
            response = self.api.request(method, self.base + path, **kwargs)
        except requests.RequestException as exc:
            self.tally.record(action, 0, expected, time.monotonic() - started, type(exc).__name__)
            return None
        ok = self.tally.record(action, response.status_code, expected, time.monotonic() - started, response.text)
        return response if ok else None

    def start(self, action: str, command: str, params: dict, wait: int, expected=(200, 202)) -> dict | None:
        body = {"params": params, "wait": wait}
        response = self.call(action, "POST", f"/api/v1/commands/{command}/runs", expected, json=body)
        if response is None or response.status_code not in (200, 202):
            return None
        run = response.json()
        self.tally.accepted(run["id"])
        return run

    def poll_to_end(self, action: str, run_id: str) -> dict | None:
        for _ in range(10):
            response = self.call(action, "GET", f"/api/v1/runs/{run_id}?wait=30", (200,))
            if response is None:
                return None
            run = response.json()
            if run["status"] not in LIVE:
                return run
        self.tally.errors.append(f"{action}: run {run_id} still live after 10 long-polls")
        return None

    # actions

    def run_and_wait(self) -> None:
        run = self.start("run+wait", "quick", {"word": self.rng.choice(["a", "b", "c"])}, wait=10)
        if run and run["status"] in LIVE:
            self.poll_to_end("run+wait", run["id"])

    def run_and_poll(self) -> None:
        run = self.start("run+poll", "count", {"n": self.rng.randint(5, 30)}, wait=0)
        if run:
            self.poll_to_end("poll", run["id"])

    def run_and_stream(self) -> None:
        run = self.start("run+stream", "count", {"n": self.rng.randint(5, 30)}, wait=0)
        if not run:
            return
        started = time.monotonic()
        try:
            with self.api.get(f"{self.base}/api/v1/runs/{run['id']}/stream", stream=True, timeout=90) as stream:
                ok = self.tally.record("stream", stream.status_code, (200,), time.monotonic() - started, "")
                if not ok:
                    return
                event = None
                for line in stream.iter_lines(decode_unicode=True):
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "end":
                        with self.tally.lock:
                            self.tally.latencies["stream-to-end"].append(time.monotonic() - started)
                        return
                self.tally.errors.append(f"stream: ended without an end event ({run['id']})")
        except requests.RequestException as exc:
            self.tally.errors.append(f"stream: {type(exc).__name__}")

    def run_and_cancel(self) -> None:
        run = self.start("run+cancel", "sleepy", {}, wait=0)
        if not run:
            return
        time.sleep(self.rng.uniform(0.05, 0.5))
        self.call("cancel", "POST", f"/api/v1/runs/{run['id']}/cancel", (202, 409))
        final = self.poll_to_end("cancel-poll", run["id"])
        if final and final["status"] != "cancelled":
            self.tally.errors.append(f"cancel: run ended {final['status']}")

    def cached(self) -> None:
        self.start("cached", "status", {}, wait=10)

    def concurrency(self) -> None:
        run = self.start("single", "single", {}, wait=0, expected=(200, 202, 409))
        if run and run["status"] in LIVE:
            self.poll_to_end("single", run["id"])

    def failing(self) -> None:
        run = self.start("fails", "fails", {}, wait=10)
        if run and run["status"] in LIVE:
            run = self.poll_to_end("fails", run["id"])
        if run and run["status"] != "failed":
            self.tally.errors.append(f"fails: ended {run['status']}")

    def bad_request(self) -> None:
        kind = self.rng.randrange(5)
        if kind == 0:
            self.call("bad:validation", "POST", "/api/v1/commands/count/runs", (400,), json={"params": {"n": "x; id"}})
        elif kind == 1:
            self.call("bad:unknown", "POST", "/api/v1/commands/nope/runs", (404,), json={"params": {}})
        elif kind == 2:
            self.call("bad:token", "GET", "/api/v1/commands", (401,), headers={"Authorization": "Bearer wrong"})
        elif kind == 3:
            self.call(
                "bad:json",
                "POST",
                "/api/v1/commands/quick/runs",
                (400,),
                data="{oops",
                headers={"Content-Type": "application/json"},
            )
        else:
            self.call("bad:wait", "POST", "/api/v1/commands/quick/runs", (400,), json={"params": {}, "wait": 61})


WEIGHTS = [
    ("run_and_wait", 30),
    ("run_and_poll", 12),
    ("run_and_stream", 12),
    ("run_and_cancel", 8),
    ("cached", 12),
    ("concurrency", 6),
    ("failing", 5),
    ("bad_request", 15),
]


def client_loop(client: Client, deadline: float) -> None:
    names, weights = zip(*WEIGHTS, strict=True)
    while time.monotonic() < deadline:
        action = client.rng.choices(names, weights)[0]
        try:
            getattr(client, action)()
        except Exception as exc:  # a client bug must not end the soak silently
            client.tally.errors.append(f"{action}: client raised {type(exc).__name__}: {exc}")


# --- reconciliation ----------------------------------------------------------------------------------


def settle(base: str, token: str, timeout: float) -> int:
    """Wait until no run is queued or running (asked as an admin); return how many still are after ``timeout``."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    deadline = time.monotonic() + timeout
    while True:
        live = [
            run["id"]
            for status in LIVE
            for run in api.get(f"{base}/api/v1/runs", params={"status": status, "limit": 500}, timeout=30).json()[
                "items"
            ]
        ]
        if not live or time.monotonic() >= deadline:
            return len(live)
        api.get(f"{base}/api/v1/runs/{live[0]}", params={"wait": 5}, timeout=30)


def reconcile(environ: dict[str, str], run_ids: set[str]) -> dict[str, Any]:
    from sqlalchemy import func, select

    from gateway import create_app
    from gateway.db.models import AuditEvent, Run
    from gateway.platform.extensions import db

    app = create_app(dict(environ), instance_path=Path(environ["GATEWAY_INSTANCE_PATH"]) / "reconcile")
    with app.app_context():
        statuses = dict(db.session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        known = set(db.session.scalars(select(Run.id)))
        counts = collections.defaultdict(collections.Counter)
        for run_id, event, number in db.session.execute(
            select(AuditEvent.run_id, AuditEvent.event, func.count())
            .where(AuditEvent.event.in_(("run.started", "run.finished")))
            .group_by(AuditEvent.run_id, AuditEvent.event)
        ):
            counts[run_id][event] = number
        events = dict(db.session.execute(select(AuditEvent.event, func.count()).group_by(AuditEvent.event)).all())
        db.session.remove()
        db.engine.dispose()
    unbalanced = [
        run_id
        for run_id in known | set(counts)
        if counts[run_id]["run.started"] != 1 or counts[run_id]["run.finished"] != 1
    ]
    verify = subprocess.run(
        [sys.executable, "manage.py", "audit", "verify"], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    return {
        "runs_by_status": statuses,
        "runs_total": len(known),
        "runs_seen_by_clients": len(run_ids),
        "seen_but_missing": sorted(run_ids - known)[:10],
        "left_live": statuses.get("queued", 0) + statuses.get("running", 0),
        "unbalanced_runs": unbalanced[:10],
        "unbalanced_count": len(unbalanced),
        "audit_events": events,
        "audit_verify_exit": verify.returncode,
        "audit_verify": (verify.stdout.strip().splitlines() or [verify.stderr.strip()[-300:]])[-1],
    }


def rss_verdict(samples: list[tuple[float, int]]) -> dict[str, Any]:
    values = [rss for _, rss in samples]
    mib = 1024 * 1024
    if len(values) < 8:
        return {"samples": len(values), "ok": True, "note": "too few samples to judge"}
    quarter = len(values) // 4
    warm = statistics.mean(values[quarter : 2 * quarter])
    late = statistics.mean(values[-quarter:])
    return {
        "samples": len(values),
        "first_mib": round(values[0] / mib, 1),
        "last_mib": round(values[-1] / mib, 1),
        "peak_mib": round(max(values) / mib, 1),
        "second_quarter_mean_mib": round(warm / mib, 1),
        "last_quarter_mean_mib": round(late / mib, 1),
        "growth_pct": round((late - warm) / warm * 100, 1),
        "ok": late <= warm * 1.25 + 16 * mib,
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# --- main ----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--postgres", action="store_true", help="a fresh database on GATEWAY_TEST_PG_URL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait for runs still live")
    parser.add_argument("--sample-seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    catalogue = folder / "commands.yaml"
    catalogue.write_text(CATALOGUE)
    pg_name = None
    if args.postgres:
        pg_name, database_url = create_pg_database()
    else:
        database_url = f"sqlite:///{folder / 'soak.db'}"
    environ = environ_for(database_url, catalogue, folder / "instance")
    server = None
    try:
        tokens = prepare(environ)
        server = Server(environ, args.workers, args.threads, folder / "gunicorn.log")
        server.wait_ready()
        samples: list[tuple[float, int]] = []
        stop_sampling = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(server, args.sample_seconds, stop_sampling, samples))
        sampler.start()

        tally = Tally()
        began = time.monotonic()
        deadline = began + args.minutes * 60
        threads = []
        for index in range(args.clients):
            token = tokens[f"soak{index % STAFF}"]
            client = Client(server.base, token, tally, random.Random(args.seed * 1000 + index))
            threads.append(threading.Thread(target=client_loop, args=(client, deadline), name=f"client-{index}"))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        load_seconds = time.monotonic() - began
        load_samples = len(samples)
        still_live = settle(server.base, tokens["admin"], args.settle)
        stop_sampling.set()
        sampler.join()
        ready_after = requests.get(server.base + "/readyz", timeout=5).status_code
        exit_code = server.stop()
        server = None
        reconciliation = reconcile(environ, tally.run_ids)
    finally:
        if server is not None:
            server.stop()
        if pg_name:
            drop_pg_database(pg_name)

    requests_total = sum(tally.actions.values())
    result = {
        "engine": "postgresql" if args.postgres else "sqlite",
        "clients": args.clients,
        "minutes": args.minutes,
        "workers": args.workers,
        "threads": args.threads,
        "load_seconds": round(load_seconds, 1),
        "requests": requests_total,
        "requests_per_second": round(requests_total / load_seconds, 1),
        "actions": dict(tally.actions),
        "statuses": {action: dict(counter) for action, counter in tally.statuses.items()},
        "latency_ms": {
            action: {"p50": round(percentile(v, 0.5) * 1000, 1), "p95": round(percentile(v, 0.95) * 1000, 1)}
            for action, v in sorted(tally.latencies.items())
        },
        "client_errors": len(tally.errors),
        "client_error_examples": tally.errors[:10],
        "runs_live_after_settle": still_live,
        "ready_at_end": ready_after,
        "server_exit_code": exit_code,
        "reconciliation": reconciliation,
        "rss": {**rss_verdict(samples[:load_samples]), "after_settle_mib": round(samples[-1][1] / 1024 / 1024, 1)},
        "rss_samples_mib": [(t, round(rss / 1024 / 1024, 1)) for t, rss in samples],
    }
    checks = {
        "no client errors": not tally.errors,
        "every seen run recorded": not reconciliation["seen_but_missing"],
        "one run.started and one run.finished per run": reconciliation["unbalanced_count"] == 0,
        "no run left queued/running": reconciliation["left_live"] == 0 and not still_live,
        "audit chain verifies": reconciliation["audit_verify_exit"] == 0,
        "RSS did not keep growing": result["rss"]["ok"],
    }
    result["checks"] = checks
    result["ok"] = all(checks.values())

    print(
        f"soak: {args.clients} clients x {args.minutes:g} min on {result['engine']}, "
        f"gunicorn {args.workers}x{args.threads}"
    )
    print(
        f"  {requests_total} requests ({result['requests_per_second']}/s), runs recorded: "
        f"{reconciliation['runs_total']} {reconciliation['runs_by_status']}"
    )
    print(f"  audit events: {reconciliation['audit_events']}")
    rss = result["rss"]
    print(
        f"  server RSS MiB: first {rss.get('first_mib')} last {rss.get('last_mib')} peak {rss.get('peak_mib')} "
        f"(last-quarter vs second-quarter mean: {rss.get('growth_pct')} %)"
    )
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    for example in tally.errors[:5]:
        print(f"    {example}")
    text = json.dumps(result, sort_keys=True)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
