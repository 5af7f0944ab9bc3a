"""In production the whole gunicorn process speaks JSON lines: gunicorn's own messages too, and no plain access line.

A log pipeline that parses one JSON object per line must not meet
``127.0.0.1 - - [..] "GET /livez"`` or ``[INFO] Booting worker``: the app
already logs every request as JSON with its request id.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest
import requests

from tests.test_replicas import replica_environ, start_replica


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_line_a_production_gunicorn_writes_is_json(database_url: str, tmp_path: Path) -> None:
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(textwrap.dedent('commands:\n  - {name: quick, title: Q, kind: shell, argv: ["true"]}\n'))
    environ = replica_environ(database_url, catalogue)
    environ.update(GATEWAY_ENV="production", RUN_AS_USER="gatewayrun", RATELIMIT_STORAGE_URI="memory://")
    environ.update(PUBLIC_BASE_URL="https://ops.example.com")
    replica = start_replica("prod", environ, tmp_path)
    try:
        response = requests.get(replica.base + "/livez", timeout=5)
        assert response.status_code == 200
        os.killpg(replica.process.pid, signal.SIGTERM)
        replica.process.wait(timeout=60)
    finally:
        replica.kill()
    lines = [line for line in replica.log.read_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    loggers = {entry["logger"] for entry in entries}
    assert "gunicorn.error" in loggers  # boot, worker and shutdown messages
    requests_logged = [e for e in entries if e["logger"] == "gateway.access" and e.get("path") == "/livez"]
    assert any(e["request_id"] == response.headers["X-Request-ID"] for e in requests_logged)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_outside_production_one_access_line_per_request_without_the_query_string(
    database_url: str, tmp_path: Path
) -> None:
    """The app's access line is the only one (gunicorn's is off); query strings (Shell2HTTP keys) stay out."""
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(textwrap.dedent('commands:\n  - {name: quick, title: Q, kind: shell, argv: ["true"]}\n'))
    environ = replica_environ(database_url, catalogue)
    environ.update(GATEWAY_ENV="development", RATELIMIT_STORAGE_URI="memory://")
    replica = start_replica("dev", environ, tmp_path)
    try:
        response = requests.get(replica.base + "/livez?key=secret-looking-key", timeout=5, headers={"Referer": "x"})
        assert response.status_code == 200
        os.killpg(replica.process.pid, signal.SIGTERM)
        replica.process.wait(timeout=60)
    finally:
        replica.kill()
    text = replica.log.read_text()
    access = [line for line in text.splitlines() if "/livez" in line]
    assert len(access) == 1 and "gateway.access: GET /livez 200 " in access[0], text  # one line, saying it all...
    assert "secret-looking-key" not in text  # ...without the query
