"""The per-process cap on long-lived requests, on a real threaded server: probes and pages still answer."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
from werkzeug.serving import make_server

from tests.test_api_runs import catalogue_path, issue_token  # noqa: F401 - fixtures

CAP = 3


@pytest.fixture
def capped_app(make_app, catalogue_path):  # noqa: F811
    return make_app(GATEWAY_COMMANDS_FILE=catalogue_path, STREAMS_PER_PROCESS=CAP, RUN_HEARTBEAT_SECONDS=1)


@pytest.fixture
def server(capped_app):
    httpd = make_server("127.0.0.1", 0, capped_app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()


def request(port, method, path, headers=None, body=None, timeout=5.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request(method, path, body=body, headers=headers or {})
    return connection, connection.getresponse()


@pytest.mark.slow
def test_streams_past_the_cap_get_503_and_probes_and_pages_still_answer(capped_app, server):
    capped_app.config["API_KEEPALIVE_SECONDS"] = 0.5
    people = ("admin", "staff")
    from gateway import accounts, groups

    with capped_app.app_context():
        for name in people:
            accounts.create_user(name, f"{name}-password-123", is_admin=(name == "admin"))
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "nap")
    auth = {"Authorization": f"Bearer {issue_token(capped_app, 'staff')[1]}", "Content-Type": "application/json"}
    _, started = request(server, "POST", "/api/v1/commands/nap/runs", auth, json.dumps({"params": {"seconds": 30}}))
    run_id = json.loads(started.read())["id"]

    held = []
    for _ in range(CAP):  # hold the cap: streams that stay open
        connection, response = request(server, "GET", f"/api/v1/runs/{run_id}/stream", auth)
        assert response.status == 200
        assert response.readline().startswith(b"retry")
        # Keep the response too: with a close-delimited body it owns the socket, and dropping it
        # would close the stream (freed at the next keep-alive, which made this test racy).
        held.append((connection, response))
    _, refused = request(server, "GET", f"/api/v1/runs/{run_id}/stream", auth)
    assert refused.status == 503 and int(refused.getheader("Retry-After")) > 0
    assert json.loads(refused.read())["error"]["code"] == "unavailable"
    _, poll = request(server, "GET", f"/api/v1/runs/{run_id}?wait=10", auth)
    assert poll.status == 503  # long-polls share the cap

    for path, expected in (("/livez", 200), ("/", 302), ("/api/v1/commands", 200)):
        began = time.monotonic()
        headers = auth if path.startswith("/api/") else {}
        _, response = request(server, "GET", path, headers, timeout=10)
        response.read()
        # Starved, they would wait for the 30 s streams to end; the bound leaves room for a loaded CI machine.
        assert response.status == expected and time.monotonic() - began < 5, path

    for connection, response in held:  # closing a stream frees its slot (noticed at the next keep-alive)
        response.close()
        connection.close()
    deadline = time.monotonic() + 10
    while True:
        _, response = request(server, "GET", f"/api/v1/runs/{run_id}?wait=0.1", auth)
        response.read()
        if response.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status == 200
    request(server, "POST", f"/api/v1/runs/{run_id}/cancel", auth)[1].read()
