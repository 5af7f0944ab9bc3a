"""``manage.py serve`` as an operator's script starts it: in the background, stopped with SIGTERM, one log line per request.

A real server process on a copy of the migrated SQLite template. ``cmd &``
in a non-interactive shell starts the command with SIGINT ignored, so the
development server must stop on SIGTERM by itself, not through a simulated
Ctrl-C; and its log must say each request once, without the query string.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config import PROJECT_ROOT
from tests.conftest import base_environ
from tests.faultkit import free_port, wait_until

# As `manage.py serve &` from a script: the shell leaves SIGINT ignored for the background job.
BACKGROUND = 'trap "" INT; exec "$0" "$@"'


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def get(self, path: str) -> int:
        with urllib.request.urlopen(self.base + path, timeout=5) as response:
            return int(response.status)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def answers(server: Server) -> bool:
    assert server.process.poll() is None, server.output()
    try:
        return server.get("/livez") == 200
    except OSError:
        return False


def sigint_ignored(pid: int) -> bool:
    """From /proc: whether SIGINT is in the process's ignored set."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    raise AssertionError("no SigIgn line")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    environ = {
        **base_environ(database_url, GATEWAY_ENV="development", GATEWAY_INSTANCE_PATH=str(tmp_path / "instance")),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    argv = ["sh", "-c", BACKGROUND, sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=environ, stdout=sink, stderr=subprocess.STDOUT)
    started = Server(process=process, base=f"http://127.0.0.1:{port}", log=log)
    try:
        assert wait_until(lambda: answers(started), timeout=30), started.output()
        yield started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_background_serve_stops_on_sigterm(server: Server) -> None:
    assert sigint_ignored(server.process.pid)  # the case under test: no Ctrl-C can reach it
    server.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        code = server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still serving 10 s after SIGTERM:\n{server.output()}")
    print(f"exited {time.monotonic() - sent:.1f}s after SIGTERM")
    assert code == 0, server.output()
    assert "drained in" in server.output()
    assert not (Path(server.log.parent) / "instance" / "gateway.pid").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_development_server_logs_one_line_per_request_without_the_query(server: Server) -> None:
    assert server.get("/readyz?key=secret-looking-key") == 200  # not a path the start-up polling used
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=10)
    output = server.output()
    lines = [line for line in output.splitlines() if "/readyz" in line]
    assert len(lines) == 1, output  # not werkzeug's line and an empty one of the app's
    assert re.search(r"gateway\.access: GET /readyz 200 \d+\.\dms$", lines[0]), lines[0]
    assert "secret-looking-key" not in output
