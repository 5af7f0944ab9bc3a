"""Side-by-side benchmark: the gateway vs Flask-Shell2HTTP vs adnanh/webhook vs a bare Flask route.

Run: ``.venv/bin/python bench/compare.py`` (about two minutes; ``--quick`` for a
short smoke run).  Issue 6's "Performance" section, measured in one run on
this machine so the targets are ratios against baselines, never absolutes:

- the gateway under gunicorn (``gunicorn.conf.py``, 1 worker x 8 threads),
  production settings, SQLite (WAL, synchronous=FULL), a staff user with an
  API token and a group grant, every run audited;
- Flask-Shell2HTTP 1.9.1 from PyPI, installed by this script into a throwaway
  virtualenv under ``bench/.venvs/`` (gitignored), served by the same gunicorn
  settings (1 worker x 8 threads);
- adnanh/webhook (Debian package ``webhook``; ``apt-get install webhook``);
- a bare Flask route calling ``subprocess.run`` (same gunicorn settings).

Every server runs ``echo`` (and ``sleep 0.2``, and ``seq`` printing 67 MiB)
from a catalogue generated in a temporary folder.  A "run" is one run-and-result
the way each server's documentation says to get one:

- gateway: ``POST /api/v1/commands/<name>/runs`` with ``wait``; on 202,
  ``GET /api/v1/runs/<id>?wait=`` until the run is finished;
- Flask-Shell2HTTP: ``POST /commands/<name>`` then ``GET result_url`` with ``wait=true``;
- webhook: one POST with ``include-command-output-in-response``;
- bare route: one POST.

Measured: p50/p95 latency at concurrency 1, completed runs/s at concurrency 8
and 32, runs/s of 32 concurrent ``sleep 0.2`` loops (ideal 160), and the peak
RSS growth of the server's whole process tree (summed from /proc, sampled every
5 ms) during one run that prints 67 MiB.  Servers run one at a time, pinned to
one core (``taskset``), the client (this process, keep-alive ``http.client``
connections in threads) to the other.  Prints a Markdown table and JSON, and
writes the JSON to ``bench/results/`` (gitignored).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import venv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HELPERS = Path(__file__).resolve().parent / "compare"
VENVS = Path(__file__).resolve().parent / ".venvs"
RESULTS = Path(__file__).resolve().parent / "results"
PROJECT_PYTHON = Path(sys.executable)
SHELL2HTTP_PINS = ["Flask-Shell2HTTP==1.9.1", "gunicorn==27.0.1"]
ECHO_ARGS = ["Hello", "World!"]
ECHO_OUTPUT = "Hello World!\n"

sys.path.insert(0, str(HELPERS))
from compare_commands import ARGV, BIG_BYTES  # noqa: E402

SERVERS = ("bare", "webhook", "shell2http", "gateway")
LABELS = {
    "bare": "bare Flask + subprocess.run",
    "webhook": "adnanh/webhook",
    "shell2http": "Flask-Shell2HTTP 1.9.1",
    "gateway": "gateway (auth + audit)",
}


# --- the servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gunicorn_flags(port: int, threads: int) -> list[str]:
    """The gateway's own worker model (gthread, 1 worker x N threads) for the other Flask apps too."""
    return ["--worker-class", "gthread", "--workers", "1", "--threads", str(threads), "--bind", f"127.0.0.1:{port}"]


def shell2http_python() -> Path:
    """A throwaway virtualenv with Flask-Shell2HTTP 1.9.1 (never the project's venv)."""
    target = VENVS / "shell2http"
    python = target / "bin" / "python"
    marker = target / ".installed"
    if marker.exists() and marker.read_text() == "\n".join(SHELL2HTTP_PINS):
        return python
    print(f"installing {', '.join(SHELL2HTTP_PINS)} into {target} ...", file=sys.stderr)
    shutil.rmtree(target, ignore_errors=True)
    venv.create(target, with_pip=True, clear=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", *SHELL2HTTP_PINS], check=True)
    marker.write_text("\n".join(SHELL2HTTP_PINS))
    return python


def write_hooks(directory: Path) -> Path:
    """webhook's hook file: the same argv as everyone else; echo takes its two args from the JSON payload."""
    hooks = []
    for name, argv in ARGV.items():
        arguments = [{"source": "string", "name": arg} for arg in argv[1:]]
        if name == "echo":
            arguments = [{"source": "payload", "name": f"args.{index}"} for index in range(len(ECHO_ARGS))]
        hooks.append(
            {
                "id": name,
                "execute-command": shutil.which(argv[0]),
                "include-command-output-in-response": True,
                "pass-arguments-to-command": arguments,
            }
        )
    path = directory / "hooks.json"
    path.write_text(json.dumps(hooks, indent=2))
    return path


GATEWAY_CATALOGUE = """
commands:
""" + "".join(
    f"""  - name: {name}
    title: {name}
    kind: shell
    argv: {json.dumps(argv + (["{args}"] if name == "echo" else []))}
    timeout: 60
"""
    + ("    params:\n      args: {type: list, max_items: 20, max_length: 200}\n" if name == "echo" else "")
    for name, argv in ARGV.items()
)


def gateway_environ(directory: Path, port: int, threads: int) -> dict[str, str]:
    """Production settings on a throwaway instance folder; commands run as an unprivileged account when root."""
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("GATEWAY_", "GUNICORN_", "DATABASE_"))
    }
    environ.update(
        {
            "GATEWAY_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "AUDIT_KEY": secrets.token_urlsafe(48),
            "GATEWAY_INSTANCE_PATH": str(directory / "instance"),
            "DATABASE_URL": f"sqlite:///{directory / 'instance' / 'gateway.db'}",
            "GATEWAY_COMMANDS_FILE": str(directory / "commands.yaml"),
            "GUNICORN_WORKERS": "1",
            "GUNICORN_THREADS": str(threads),
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        }
    )
    if os.geteuid() == 0:
        environ["RUN_AS_USER"] = os.environ.get("BENCH_RUN_AS_USER", "gatewayrun")
    return environ


def prepare_gateway(directory: Path, environ: dict[str, str]) -> str:
    """Migrate, create a staff user in a group granted the three commands, and return a fresh API token."""
    (directory / "commands.yaml").write_text(GATEWAY_CATALOGUE)

    def manage(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [PROJECT_PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=environ,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout.strip()

    manage("db", "upgrade")
    manage("users", "create", "bench", "--password-stdin", stdin=secrets.token_urlsafe(24) + "\n")
    manage("groups", "create", "benchers")
    manage("groups", "add-member", "benchers", "bench")
    for name in ARGV:
        manage("grants", "add", "benchers", name)
    return manage("tokens", "create", "bench", "--name", "compare")


@dataclass
class Server:
    """One server under test: how to start it, and how to get one run-and-result from it."""

    name: str
    argv: list[str]
    port: int
    cwd: Path
    environ: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def start(self, cpu: int, log: Path) -> None:
        pinned = ["taskset", "--cpu-list", str(cpu), *map(str, self.argv)]
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                pinned, cwd=self.cwd, env=self.environ, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited at start-up; see {log}:\n{log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"{self.name} did not listen on {self.port} within 60 s; see {log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # gunicorn drains; webhook exits
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()


# --- one run-and-result per server -------------------------------------------------------


class Failed(Exception):
    """A run that did not produce the expected result (counted, not fatal)."""


class Client:
    """A keep-alive HTTP connection (one per client thread) and the server's run-and-result protocol."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        self.retries = 0

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        payload = None if body is None else json.dumps(body).encode()
        headers = dict(self.server.headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=payload, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.connection.close()  # the server closed an idle keep-alive connection: reconnect once
                if attempt:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.connection.close()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        raise AssertionError("unreachable")

    def run(self, name: str) -> int:
        """One run of ``name`` to its result; returns the output size the server reported."""
        return getattr(self, f"run_{self.server.name}")(name)

    def run_bare(self, name: str) -> int:
        status, _, data = self.request("POST", f"/run/{name}", {"args": ECHO_ARGS if name == "echo" else []})
        result = json.loads(data) if status == 200 else {}
        return check(name, status == 200 and result["returncode"] == 0, result.get("stdout"), data)

    def run_webhook(self, name: str) -> int:
        status, _, data = self.request("POST", f"/hooks/{name}", {"args": ECHO_ARGS})
        return check(name, status == 200, data.decode("utf-8", "replace"), data)

    def run_shell2http(self, name: str) -> int:
        body = {"args": ECHO_ARGS if name == "echo" else [], "force_unique_key": True}
        status, _, data = self.request("POST", f"/commands/{name}", body)
        if status != 202:
            raise Failed(f"shell2http POST {status}: {data[:200]!r}")
        result_url = json.loads(data)["result_url"].replace("wait=false", "wait=true")
        path = result_url.split(f":{self.server.port}", 1)[1]
        while True:
            status, _, data = self.request("GET", path)
            result = json.loads(data)
            if status == 200 and "returncode" in result:
                return check(name, result["returncode"] == 0, result["report"], data)
            if status != 200 or result.get("status") != "running":
                raise Failed(f"shell2http GET {status}: {data[:200]!r}")

    def run_gateway(self, name: str) -> int:
        wait = 60
        params = {"args": ECHO_ARGS} if name == "echo" else {}
        status, headers, data = self.request("POST", f"/api/v1/commands/{name}/runs", {"params": params, "wait": wait})
        while status in (429, 503):  # past a cap: the documented answer is Retry-After
            self.retries += 1
            time.sleep(float(headers.get("retry-after", "1")))
            status, headers, data = self.request(
                "POST", f"/api/v1/commands/{name}/runs", {"params": params, "wait": wait}
            )
        run = json.loads(data)
        while status in (202, 429, 503) or (status == 200 and run["status"] in ("queued", "running")):
            if status in (429, 503):
                self.retries += 1
                time.sleep(float(headers.get("retry-after", "1")))
            status, headers, data = self.request("GET", f"/api/v1/runs/{run['id']}?wait={wait}")
            if status == 200:
                run = json.loads(data)
        if status != 200:
            raise Failed(f"gateway {status}: {data[:200]!r}")
        return check(name, run["status"] == "succeeded", run["output"], data, reported=run["output_bytes"])


def check(name: str, ok: bool, output: str | None, data: bytes, reported: int | None = None) -> int:
    """The result must be the command's: echo's exact output, the big command's size."""
    if not ok or output is None:
        raise Failed(f"{name}: {data[:200]!r}")
    if name == "echo" and output != ECHO_OUTPUT:
        raise Failed(f"echo printed {output!r}")
    size = reported if reported is not None else len(output.encode())
    if name == "big" and size != BIG_BYTES:
        raise Failed(f"big printed {size} bytes, expected {BIG_BYTES}")
    return size


# --- measurements -------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency(server: Server, runs: int, warmup: int) -> dict[str, Any]:
    """Concurrency 1: p50/p95 of one echo run-and-result, in milliseconds."""
    client = Client(server)
    for _ in range(warmup):
        client.run("echo")
    timings, failures = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        try:
            client.run("echo")
        except Failed:
            failures += 1
            continue
        timings.append((time.perf_counter() - t0) * 1000)
    client.connection.close()
    return {
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(percentile(timings, 0.95), 2),
        "runs": len(timings),
        "failures": failures,
    }


def throughput(server: Server, name: str, concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` client threads loop run-and-result for ``seconds``: completed runs per second."""
    clients = [Client(server) for _ in range(concurrency)]
    barrier = threading.Barrier(concurrency + 1)
    done: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    state = {"deadline": 0.0}

    def loop(client: Client) -> None:
        barrier.wait()
        while time.perf_counter() < state["deadline"]:
            try:
                client.run(name)
            except (Failed, OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                with lock:
                    failures.append(str(exc)[:200])
                continue
            with lock:
                done.append(time.perf_counter())

    threads = [threading.Thread(target=loop, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    state["deadline"] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    for client in clients:
        client.connection.close()
    elapsed = (max(done) if done else time.perf_counter()) - started
    return {
        "runs_per_s": round(len(done) / elapsed, 1) if elapsed > 0 else 0.0,
        "runs": len(done),
        "seconds": round(elapsed, 2),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "retries_after_429_503": sum(client.retries for client in clients),
    }


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from /proc (no psutil needed)."""
    total, pending, page = 0, [root], os.sysconf("SC_PAGE_SIZE")
    while pending:
        pid = pending.pop()
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * page
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # the process ended while we looked
    return total


def peak_rss(server: Server) -> dict[str, Any]:
    """Peak RSS growth of the server's process tree while one run prints 67 MiB (sampled every 5 ms)."""
    assert server.process is not None
    root = server.process.pid
    time.sleep(0.5)
    baseline = statistics.median(tree_rss_bytes(root) for _ in range(20))
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_bytes(root))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    client = Client(server)
    t0 = time.perf_counter()
    error = None
    try:
        size = client.run("big")
    except (Failed, OSError, http.client.HTTPException) as exc:
        size, error = 0, str(exc)[:200]
    elapsed = time.perf_counter() - t0
    time.sleep(0.2)
    stop.set()
    sampler.join()
    client.connection.close()
    mib = 1024 * 1024
    return {
        "baseline_mib": round(baseline / mib, 1),
        "peak_mib": round(peak[0] / mib, 1),
        "growth_mib": round((peak[0] - baseline) / mib, 1),
        "output_bytes": size,
        "seconds": round(elapsed, 2),
        "error": error,
    }


def measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    print(f"measuring {LABELS[server.name]} ...", file=sys.stderr)
    result = {"c1": latency(server, args.runs, args.warmup)}
    for concurrency in (8, 32):
        result[f"c{concurrency}"] = throughput(server, "echo", concurrency, args.seconds)
    result["sleep_c32"] = throughput(server, "nap", 32, args.seconds)
    result["big"] = peak_rss(server)
    return result


def fsync_ms(directory: Path, rounds: int = 50) -> dict[str, float]:
    """fsync latency of the disk under the gateway's SQLite file: each run commits (and fsyncs) at least twice."""
    timings = []
    fd = os.open(directory / "fsync-probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(rounds):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            timings.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(directory / "fsync-probe")
    return {"p50_ms": round(statistics.median(timings), 3), "p95_ms": round(percentile(timings, 0.95), 3)}


def failed(result: dict[str, Any]) -> bool:
    return any(part.get("failures") or part.get("error") for part in result.values())


# --- set-up, report -----------------------------------------------------------------------


def build_servers(directory: Path, wanted: list[str], threads: int) -> list[Server]:
    servers = []
    python_flask = [PROJECT_PYTHON, "-m", "gunicorn"]
    helpers = ["--chdir", HELPERS, "--pythonpath", HELPERS]
    for name in wanted:
        port = free_port()
        if name == "bare":
            argv = [*python_flask, *gunicorn_flags(port, threads), *helpers, "bare_app:app"]
            servers.append(Server(name, argv, port, HELPERS))
        elif name == "webhook":
            binary = shutil.which("webhook")
            if binary is None:
                raise SystemExit(
                    "adnanh/webhook is not installed: run `apt-get install webhook` (or --only without it)"
                )
            argv = [binary, "-hooks", write_hooks(directory), "-ip", "127.0.0.1", "-port", str(port)]
            servers.append(Server(name, argv, port, directory))
        elif name == "shell2http":
            argv = [
                shell2http_python(),
                "-m",
                "gunicorn",
                *gunicorn_flags(port, threads),
                *helpers,
                "shell2http_app:app",
            ]
            servers.append(Server(name, argv, port, HELPERS))
        elif name == "gateway":
            environ = gateway_environ(directory, port, threads)
            token = prepare_gateway(directory, environ)
            argv = [PROJECT_PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
            servers.append(Server(name, argv, port, ROOT, environ, {"Authorization": f"Bearer {token}"}))
    return servers


def targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 6's targets, each as measured / required and whether it holds."""
    gateway, bare, shell2http = results.get("gateway"), results.get("bare"), results.get("shell2http")
    if gateway is None:
        return []
    rows = []
    if bare:
        ratio = gateway["c1"]["p50_ms"] / bare["c1"]["p50_ms"]
        rows.append(
            {"target": "c=1 p50 within 1.4x of the bare route", "measured": f"{ratio:.2f}x", "ok": ratio <= 1.4}
        )
    if shell2http:
        ratio = gateway["c1"]["p50_ms"] / shell2http["c1"]["p50_ms"]
        rows.append({"target": "c=1 p50 faster than Flask-Shell2HTTP", "measured": f"{ratio:.2f}x", "ok": ratio < 1})
        ratio = gateway["c8"]["runs_per_s"] / max(shell2http["c8"]["runs_per_s"], 0.1)
        rows.append(
            {"target": "c=8 throughput >= 1.3x Flask-Shell2HTTP", "measured": f"{ratio:.2f}x", "ok": ratio >= 1.3}
        )
    rate = gateway["sleep_c32"]["runs_per_s"]
    rows.append({"target": "sleep 0.2 at c=32 >= 150 runs/s", "measured": f"{rate} runs/s", "ok": rate >= 150})
    growth = gateway["big"]["growth_mib"]
    ok = growth < 64 and not gateway["big"]["error"]
    rows.append({"target": "peak RSS growth < 64 MB for 67 MiB of output", "measured": f"{growth} MiB", "ok": ok})
    return rows


def markdown(results: dict[str, dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    names = list(results)
    lines = [
        "| | " + " | ".join(LABELS[name] for name in names) + " |",
        "|---|" + "---:|" * len(names),
    ]

    def row(label: str, value: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(value(results[name]) for name in names) + " |")

    def failures(part: dict[str, Any]) -> str:
        return f" ({part['failures']} failed)" if part.get("failures") else ""

    row("c=1 p50 (ms)", lambda r: f"{r['c1']['p50_ms']}{failures(r['c1'])}")
    row("c=1 p95 (ms)", lambda r: f"{r['c1']['p95_ms']}")
    row("c=8 runs/s", lambda r: f"{r['c8']['runs_per_s']}{failures(r['c8'])}")
    row("c=32 runs/s", lambda r: f"{r['c32']['runs_per_s']}{failures(r['c32'])}")
    row("sleep 0.2, c=32, runs/s (ideal 160)", lambda r: f"{r['sleep_c32']['runs_per_s']}{failures(r['sleep_c32'])}")
    row(
        "peak RSS growth, 67 MiB output (MiB)",
        lambda r: f"{r['big']['growth_mib']} (of {r['big']['peak_mib']})" + (" (failed)" if r["big"]["error"] else ""),
    )
    if checks:
        lines += ["", "| target (issue 6) | measured | holds |", "|---|---:|:---:|"]
        lines += [f"| {c['target']} | {c['measured']} | {'yes' if c['ok'] else 'NO'} |" for c in checks]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SERVERS), help=f"comma-separated subset of {','.join(SERVERS)}")
    parser.add_argument("--runs", type=int, default=300, help="timed runs at concurrency 1")
    parser.add_argument("--warmup", type=int, default=30, help="untimed runs first")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput phase")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads of the one worker (issue 6: 8)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (noisy figures)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.warmup, args.seconds = 40, 5, 1.5
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the server to a core")
    os.sched_setaffinity(0, {args.client_cpu})

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        directory = Path(tmp)
        disk = fsync_ms(directory)
        for server in build_servers(directory, wanted, args.threads):
            server.start(args.server_cpu, directory / f"{server.name}.log")
            try:
                results[server.name] = measure(server, args)
            finally:
                server.stop()
            if failed(results[server.name]):
                log = (directory / f"{server.name}.log").read_text(errors="replace").splitlines()
                print(f"{server.name}: some runs failed; the end of its log:", *log[-30:], sep="\n", file=sys.stderr)

    checks = targets(results)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu,
            "fsync_of_the_database_disk": disk,
        },
        "settings": {"runs": args.runs, "warmup": args.warmup, "seconds": args.seconds, "threads": args.threads},
        "results": results,
        "targets": checks,
    }
    print(markdown(results, checks))
    print(
        f"\nfsync on the gateway database's disk: p50 {disk['p50_ms']} ms, p95 {disk['p95_ms']} ms (load {report['machine']['load_average'][0]:.1f})"
    )
    print()
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"compare-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json").write_text(
        json.dumps(report, indent=2)
    )


if __name__ == "__main__":
    main()
