"""Audit forwarding drain speed: a 100,000-event backlog to an HTTPS receiver and to rsyslog (TCP, TLS).

Run: ``.venv/bin/python bench/audit_forward.py [--rows 100000] [--engine both] [--replicas-runs 2000]``
(a few minutes; PostgreSQL and Redis as for the tests, rsyslog + rsyslog-gnutls installed).

In one session:

1. ``bench/replicas.py`` (its own process, ``--setups sqlite,pg-1,pg-2``): the ledger event
   rate the gateway produces under load, 2 events per run (``run.started``, ``run.finished``);
   the highest of the setups is the rate forwarding has to outrun (target: >= 10x);
2. per engine, a fresh database filled with a valid chain of ``--rows`` events (the audit viewer
   benchmark's fill), ``audit verify`` timed over it (events/s, the yardstick for the ratio);
3. per destination, alone: a forwarder started as a serving process starts it
   (``start_forwarding``: its thread, the lease, batches of ``AUDIT_FORWARD_BATCH``), its cursor
   put at 0, timed until the cursor reaches the head; the receiver runs in another process
   (HTTPS: a threaded server with a trustme certificate; syslog: rsyslogd writing to a file), and
   what it got is checked afterwards: every ``seq`` once, in order, each ``prev_hash`` the previous
   ``hash``, the hashes those of the ledger.

Prints one JSON object: per engine and destination, events/s, the ratio to ``audit verify`` and to
the ledger rate of step 1, and whether the 10x target holds.  A shared machine moves the absolute
figures; compare the ratios.

Measured 2026-12-07 (2 shared cores, load average 6-8 from other work; batch 500): replicas.py's
ledger rate 179.8 events/s (sqlite; pg-1 93.4, pg-2 90.4). Draining 100,000 events: SQLite
HTTPS 7,144 events/s, syslog+tcp 8,489, syslog+tls 7,079; PostgreSQL 7,140, 5,647, 7,674; that
is 31-47x the ledger rate and 0.38-0.58x ``audit verify`` (14,700 events/s in the same run);
every receiver got every event once, in order, matching the ledger.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.audit_viewer import AUDIT_KEY, SECRET, fill, fresh_app
from tests.receivers import HttpReceiver, Received
from tests.rsyslog import Rsyslog
from tests.siem import chain_of, parse_syslog

TARGET_RATIO = 10
PROJECT = Path(__file__).resolve().parent.parent


def ledger_rate(runs: int) -> dict[str, Any]:
    """bench/replicas.py in its own process: runs/s per setup, as ledger events/s (2 per run)."""
    argv = [sys.executable, "bench/replicas.py", "--json-only", "--runs", str(runs)]
    environ = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run(argv, cwd=PROJECT, env=environ, capture_output=True, text=True, check=False, timeout=3600)
    if not done.stdout.strip():
        raise SystemExit(f"bench/replicas.py failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rates = {setup["setup"]: round(2 * setup["runs_per_second"], 1) for setup in summary["setups"]}
    return {"ledger_events_per_second": rates, "replicas_ok": summary["ok"], "max": max(rates.values())}


def _serve_https(port_out: Any, cert_dir: str, out_file: str) -> None:
    """The HTTPS receiver, in its own process: appends each body to ``out_file``, answers 200."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(f"{cert_dir}/cert.pem", f"{cert_dir}/key.pem")
    sink = open(out_file, "ab")  # noqa: SIM115 (lives as long as the process)

    def respond(request: Received) -> tuple[int, dict[str, str], bytes]:
        sink.write(request.body)
        sink.flush()
        return 200, {}, b"ok"

    receiver = HttpReceiver(tls=context, responder=respond).start()
    receiver.received = _Discard()  # type: ignore[assignment]  # keep no copy: 100,000 events
    port_out.put(receiver.port)
    while True:
        time.sleep(3600)


class _Discard(list):  # type: ignore[type-arg]
    def append(self, _item: Any) -> None:
        return


def forward(app_environ: dict[str, str], instance: Path) -> float:
    """Start forwarding from seq 1 as a serving process would; seconds until the cursor reaches the head."""
    from gateway import create_app
    from gateway.audit import forwarding
    from gateway.db.models import AuditEvent, AuditForwardCursor
    from gateway.platform.extensions import db

    app = create_app(app_environ, instance_path=instance)
    name = app.config["AUDIT_FORWARD"][0].name
    with app.app_context():
        forwarding.reset(name, 1, actor={"id": None, "name": "bench"})  # itself an event: the new head
        target = db.session.scalar(sa.select(sa.func.max(AuditEvent.seq)))
        db.session.remove()
    started = time.perf_counter()
    forwarding.start_forwarding(app)
    try:
        while True:
            with app.app_context():
                seq = db.session.scalar(
                    sa.select(AuditForwardCursor.last_seq).where(AuditForwardCursor.destination == name)
                )
                db.session.remove()
            if seq is not None and seq >= target:
                return time.perf_counter() - started
            time.sleep(0.02)
    finally:
        forwarding.stop_forwarding(app)
        with app.app_context():
            db.engine.dispose()


def ledger_hashes(url: str) -> dict[int, str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT seq, hash FROM audit_events ORDER BY seq")).all()
    engine.dispose()
    return {int(seq): hash_ for seq, hash_ in rows}


def check(events: list[dict[str, Any]], hashes: dict[int, str]) -> bool:
    chain_of(events, after=(0, None))
    return [int(e["seq"]) for e in events] == sorted(hashes) and all(e["hash"] == hashes[int(e["seq"])] for e in events)


def measure(engine: str, rows: int, batch: int, folder: Path, ca: trustme.CA) -> list[dict[str, Any]]:
    from gateway import audit
    from gateway.platform.extensions import db

    results = []
    with fresh_app(engine) as app:
        fill(app, rows)
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        with app.app_context():
            started = time.perf_counter()
            verified = audit.verify(db.session, audit.Keyring.from_config(app.config))
            verify_rate = rows / (time.perf_counter() - started)
            db.session.remove()
        assert verified.ok and verified.checked == rows, verified
        base = {
            "GATEWAY_ENV": "testing", "SECRET_KEY": SECRET, "AUDIT_KEY": AUDIT_KEY, "AUDIT_KEY_ID": "k1",
            "DATABASE_URL": url, "AUDIT_ANCHOR_EVERY": "0", "AUDIT_FORWARD_BATCH": str(batch),
            "OUTBOUND_CA_FILE": str(folder / "ca.pem"),
        }  # fmt: skip

        for kind in ("https", "syslog+tcp", "syslog+tls"):
            run_dir = Path(tempfile.mkdtemp(prefix=f"gw-forward-{kind}-", dir=folder))
            rsyslog = None
            receiver = None
            if kind == "https":
                out = run_dir / "https.jsonl"
                ports: Any = multiprocessing.get_context("fork").Queue()
                receiver = multiprocessing.get_context("fork").Process(
                    target=_serve_https, args=(ports, str(folder), str(out)), daemon=True
                )
                receiver.start()
                destination = f"bench=https://localhost:{ports.get(timeout=30)}/ingest"
            else:
                rsyslog = Rsyslog(run_dir, ca).start()
                port = rsyslog.tcp_port if kind == "syslog+tcp" else rsyslog.tls_port
                host = "127.0.0.1" if kind == "syslog+tcp" else "localhost"
                destination = f"bench={kind}://{host}:{port}"
            try:
                seconds = forward({**base, "AUDIT_FORWARD": destination}, run_dir / "instance")
                hashes = ledger_hashes(url)
                if kind == "https":
                    events = [json.loads(line) for line in out.read_bytes().splitlines()]
                else:
                    assert rsyslog is not None
                    name = "tcp" if kind == "syslog+tcp" else "tls"
                    deadline = time.monotonic() + 60
                    while len(lines := rsyslog.lines(name)) < len(hashes) and time.monotonic() < deadline:
                        time.sleep(0.1)
                    events = [parse_syslog(line).sd["ledger@32473"] for line in lines]
                intact = check(events, hashes)
            finally:
                if receiver is not None:
                    receiver.kill()
                if rsyslog is not None:
                    rsyslog.stop()
            forwarded = len(hashes)
            results.append({
                "engine": engine, "destination": kind, "events": forwarded, "batch": batch,
                "seconds": round(seconds, 2), "events_per_second": round(forwarded / seconds),
                "verify_events_per_second": round(verify_rate),
                "ratio_to_verify": round(forwarded / seconds / verify_rate, 2), "received_intact": intact,
            })  # fmt: skip
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="AUDIT_FORWARD_BATCH (the default: 500)")
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--replicas-runs", type=int, default=2000, help="bench/replicas.py --runs (0: skip it)")
    args = parser.parse_args()

    rate = ledger_rate(args.replicas_runs) if args.replicas_runs else None
    print(json.dumps({"replicas": rate}), file=sys.stderr, flush=True)
    folder = Path(tempfile.mkdtemp(prefix="gw-bench-forward-"))
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    server.private_key_pem.write_to_path(str(folder / "key.pem"))
    results = []
    for engine in ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]:
        results.extend(measure(engine, args.rows, args.batch, folder, ca))
    for result in results:
        if rate:
            result["ratio_to_ledger_rate"] = round(result["events_per_second"] / rate["max"], 1)
            result["meets_target"] = result["ratio_to_ledger_rate"] >= TARGET_RATIO and result["received_intact"]
    print(
        json.dumps({"cpus": os.cpu_count(), "load_average": os.getloadavg(), "replicas": rate, "forwarding": results})
    )


if __name__ == "__main__":
    main()
