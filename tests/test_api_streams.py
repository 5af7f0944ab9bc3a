"""The per-process cap on long-lived requests, on a real threaded server: probes and pages still answer."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
from werkzeug.serving import make_server

from gateway.identity import accounts, groups
from tests.test_api_runs import catalogue_path, issue_token  # noqa: F401 - fixtures

CAP = 3


@pytest.fixture
def capped_app(make_app, catalogue_path):  # noqa: F811
    return make_app(GATEWAY_COMMANDS_FILE=catalogue_path, STREAMS_PER_PROCESS=CAP, RUN_HEARTBEAT_SECONDS=1)


def serve(app):
    """A real threaded server for ``app``: yields its port, stops afterwards."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()


@pytest.fixture
def server(capped_app):
    yield from serve(capped_app)


def request(port, method, path, headers=None, body=None, timeout=5.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request(method, path, body=body, headers=headers or {})
    return connection, connection.getresponse()


@pytest.mark.slow
def test_streams_past_the_cap_get_503_and_probes_and_pages_still_answer(capped_app, server):
    capped_app.config["API_KEEPALIVE_SECONDS"] = 0.5
    people = ("admin", "staff")

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


# --- STREAMS_PER_USER: one user cannot take every slot ---------------------------------------


def test_stream_slots_count_per_holder_and_per_process():
    from gateway.api.streams import SlotsFull, StreamSlots

    slots = StreamSlots(limit=5, per_user=2)
    first, second = slots.acquire(1), slots.acquire(1)
    with pytest.raises(SlotsFull) as refused:
        slots.acquire(1)
    assert refused.value.per_user
    others = [slots.acquire(2), slots.acquire(2), slots.acquire(3)]
    with pytest.raises(SlotsFull) as refused:
        slots.acquire(4)
    assert not refused.value.per_user  # the process is full: someone else's cap, not theirs
    first.release()
    first.release()  # a close hook and a with-block may both release: only the first counts
    assert slots.held(1) == 1 and slots.open == 4
    third = slots.acquire(1)
    for slot in (second, third, *others):
        with slot:
            pass
    assert slots.open == 0 and slots.held(1) == 0


def staff_and_other(app):
    """staff and other, both in group ops, granted every command of the API catalogue."""
    from tests.test_api_runs import GRANTED

    with app.app_context():
        ids = {name: accounts.create_user(name, f"{name}-password-123").id for name in ("staff", "other")}
        groups.create_group("ops")
        for name in ids:
            groups.add_member("ops", name)
        for command in GRANTED:
            groups.add_grant("ops", command)
    return ids


@pytest.fixture
def per_user_app(make_app, catalogue_path):  # noqa: F811
    return make_app(GATEWAY_COMMANDS_FILE=catalogue_path, STREAMS_PER_PROCESS=10, RUN_HEARTBEAT_SECONDS=1)


def test_a_user_at_streams_per_user_gets_429_and_202_while_another_user_streams(per_user_app):
    """The slots are those every long-lived request takes; here four are held by staff's other requests."""
    from gateway.api import streams
    from tests.test_api_runs import assert_error, start

    ids = staff_and_other(per_user_app)
    assert per_user_app.config["STREAMS_PER_USER"] == 4  # the default
    client = per_user_app.test_client()
    staff = {"Authorization": f"Bearer {issue_token(per_user_app, 'staff')[1]}"}
    other = {"Authorization": f"Bearer {issue_token(per_user_app, 'other')[1]}"}
    run_id = start(client, staff, "nap", {"seconds": 30}).get_json()["id"]
    slots = streams.slots(per_user_app)
    held = [slots.acquire(ids["staff"]) for _ in range(4)]

    refused = client.get(f"/api/v1/runs/{run_id}/stream", headers=staff)
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) > 0
    began = time.monotonic()
    poll = client.get(f"/api/v1/runs/{run_id}?wait=10", headers=staff)
    assert_error(poll, 429, "rate_limited")
    assert int(poll.headers["Retry-After"]) > 0
    waited = start(client, staff, "nap", {"seconds": 30}, wait=10)
    assert waited.status_code == 202 and waited.get_json()["status"] in ("queued", "running")
    assert time.monotonic() - began < 5  # neither waited for its 10 s
    assert slots.held(ids["staff"]) == 4

    finished = start(client, other, "chatty", {"n": 3}, wait=20)  # another user: waits, streams, long-polls
    assert finished.status_code == 200 and finished.get_json()["status"] == "succeeded"
    other_run = finished.get_json()["id"]
    with client.get(f"/api/v1/runs/{other_run}/stream", headers=other) as stream:
        assert stream.status_code == 200 and "event: end" in stream.get_data(as_text=True)
    assert client.get(f"/api/v1/runs/{other_run}?wait=1", headers=other).status_code == 200
    assert slots.held(ids["other"]) == 0 and slots.open == 4  # every one of them gave its slot back

    for slot in held:
        slot.release()
    assert client.get(f"/api/v1/runs/{run_id}?wait=0.2", headers=staff).status_code == 200
    for live in (run_id, waited.get_json()["id"]):
        client.post(f"/api/v1/runs/{live}/cancel", headers=staff)
    assert slots.open == 0


@pytest.fixture
def per_user_server(per_user_app):
    yield from serve(per_user_app)


def session_cookie(app, user_id: int) -> str:
    """A signed-in browser's Cookie header (what the run page's EventSource sends)."""
    from tests.conftest import seed_session

    client = app.test_client()
    seed_session(app, client, user_id)
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return f"{cookie.key}={cookie.value}"


@pytest.mark.slow
def test_streams_per_user_count_tokens_and_sessions_together_on_a_real_server(per_user_app, per_user_server):
    per_user_app.config["API_KEEPALIVE_SECONDS"] = 0.5
    port = per_user_server
    ids = staff_and_other(per_user_app)
    json_type = {"Content-Type": "application/json"}
    token_a, token_b, token_other = (issue_token(per_user_app, name)[1] for name in ("staff", "staff", "other"))
    by_a, by_b = ({"Authorization": f"Bearer {t}", **json_type} for t in (token_a, token_b))
    by_other = {"Authorization": f"Bearer {token_other}", **json_type}
    browser = {"Cookie": session_cookie(per_user_app, ids["staff"])}
    nap = json.dumps({"params": {"seconds": 30}})
    run_id = json.loads(request(port, "POST", "/api/v1/commands/nap/runs", by_a, nap)[1].read())["id"]
    other_run = json.loads(request(port, "POST", "/api/v1/commands/nap/runs", by_other, nap)[1].read())["id"]

    held = []
    for headers in (by_a, by_a, by_b, browser):  # two tokens and a browser session of one user
        connection, response = request(port, "GET", f"/api/v1/runs/{run_id}/stream", headers)
        assert response.status == 200
        assert response.readline().startswith(b"retry")
        held.append((connection, response))
    for headers in (by_b, browser):
        _, refused = request(port, "GET", f"/api/v1/runs/{run_id}/stream", headers)
        assert refused.status == 429 and int(refused.getheader("Retry-After")) > 0
        assert json.loads(refused.read())["error"]["code"] == "rate_limited"

    connection, stream = request(port, "GET", f"/api/v1/runs/{other_run}/stream", by_other)
    assert stream.status == 200 and stream.readline().startswith(b"retry")  # another user still streams
    held.append((connection, stream))

    for connection, response in held:  # a client going away frees its slot (noticed at the next keep-alive)
        response.close()
        connection.close()
    deadline = time.monotonic() + 10
    while True:
        _, response = request(port, "GET", f"/api/v1/runs/{run_id}/stream", by_b)
        if response.status == 200 or time.monotonic() > deadline:
            break
        response.read()
        time.sleep(0.2)
    assert response.status == 200
    response.close()
    for live, headers in ((run_id, by_a), (other_run, by_other)):
        request(port, "POST", f"/api/v1/runs/{live}/cancel", headers)[1].read()
