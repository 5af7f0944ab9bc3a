"""JSON API v1, black-box over HTTP: commands, runs (wait, long-poll, SSE, cancel, lists), errors, auth.

Real app, real processes; the tests of runs and revocation on both engines.  Shared
fixtures here (``api_app``, ``people``, ``bearer``) are imported by the other
``test_api_*`` files.
"""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gateway.identity import accounts, groups, tokens
from tests.conftest import csrf_token_from, login_response

PY = sys.executable
CATALOGUE = textwrap.dedent(
    f"""
    commands:
      - name: echo
        title: Echo
        kind: shell
        argv: ["echo", "{{args}}"]
        params:
          args: {{type: list, pattern: "[A-Za-z0-9 !.,-]*"}}
      - name: chatty
        title: Prints lines slowly on both streams
        kind: shell
        argv: ["{PY}", "-u", "-c", "import sys,time\\nfor i in range(int(sys.argv[1])):\\n    print('out', i); print('err', i, file=sys.stderr); time.sleep(0.05)", "{{n}}"]
        params:
          n: {{type: integer, min: 1, max: 200, default: 5}}
      - name: nap
        title: Sleeps
        kind: shell
        argv: ["sleep", "{{seconds}}"]
        params:
          seconds: {{type: number, min: 0, max: 60, default: 30}}
        timeout: 60
      - name: secretive
        title: Takes a secret
        kind: shell
        argv: ["true"]
        env:
          TOKEN: "{{token}}"
        params:
          token: {{type: string, secret: true, default: "hunter2-default"}}
          level: {{type: choice, choices: [low, high], default: low}}
      - name: admins-only
        title: Not granted to anyone
        kind: shell
        argv: ["true"]
      - name: fenced
        title: Only from 10.0.0.0/8
        kind: shell
        argv: ["true"]
        allowed_networks: ["10.0.0.0/8"]
      - name: limited
        title: Rate limited
        kind: shell
        argv: ["true"]
        rate_limit: 1/minute
      - name: guarded
        title: Needs a second person (approvers in group leads)
        kind: shell
        argv: ["true"]
        approval: {{approvers: [leads]}}
    schedules:
      - name: echo-hourly
        command: echo
        params: {{args: [hourly]}}
        cron: "0 * * * *"
    """
)
GRANTED = ("echo", "chatty", "nap", "secretive", "fenced", "limited")


@pytest.fixture
def catalogue_path(tmp_path: Path) -> Path:
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    return path


@pytest.fixture
def api_app(make_app, catalogue_path):
    return make_app(GATEWAY_COMMANDS_FILE=catalogue_path, RUN_HEARTBEAT_SECONDS=1)


@pytest.fixture
def people(api_app):
    """admin, staff and other (both staff in group ops, granted everything but admins-only)."""

    with api_app.app_context():
        for name in ("admin", "staff", "other"):
            accounts.create_user(name, f"{name}-password-123", is_admin=(name == "admin"))
        groups.create_group("ops")
        for name in ("staff", "other"):
            groups.add_member("ops", name)
        for command in GRANTED:
            groups.add_grant("ops", command)
    return ("admin", "staff", "other")


def issue_token(app, username: str, **kwargs) -> tuple[int, str]:

    with app.app_context():
        issued = tokens.create_token(accounts.get_user(username), **kwargs)
        return issued.token.id, issued.secret


@pytest.fixture
def bearer(api_app, people):
    """``bearer("staff")`` -> headers with a fresh token of that user."""

    def headers(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(api_app, name)[1]}"}

    return headers


def start(client, headers, name, params=None, wait=None, **kwargs):
    body = {"params": params or {}}
    if wait is not None:
        body["wait"] = wait
    return client.post(f"/api/v1/commands/{name}/runs", json=body, headers=headers, **kwargs)


def wait_done(client, headers, run_id, seconds=20.0):
    response = client.get(f"/api/v1/runs/{run_id}?wait={seconds}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assert_error(response, status: int, code: str, field: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    if field is not None:
        assert field in body["error"]["details"], body
    return body["error"]


# --- commands -------------------------------------------------------------------------------


def test_commands_list_only_what_the_caller_may_run_with_schema_and_no_secrets(api_app, bearer):
    client = api_app.test_client()
    staff = client.get("/api/v1/commands", headers=bearer("staff")).get_json()
    names = {item["name"] for item in staff["items"]}
    assert names == {"echo", "chatty", "nap", "secretive", "limited"}  # not admins-only, not fenced off
    assert staff["next_cursor"] is None
    admin_names = {i["name"] for i in client.get("/api/v1/commands", headers=bearer("admin")).get_json()["items"]}
    assert "admins-only" in admin_names and "fenced" not in admin_names  # allowed_networks binds admins too
    detail = client.get("/api/v1/commands/secretive", headers=bearer("staff")).get_json()
    assert detail["params"]["level"] == {
        "type": "choice", "required": False, "default": "low", "pattern": None, "min": None, "max": None,
        "choices": ["low", "high"], "max_length": None, "max_items": None, "help": "", "label": None, "secret": False,
        "multiple": False, "min_items": None, "depends_on": None, "choices_url": None,
    }  # fmt: skip
    assert detail["params"]["token"]["secret"] is True and detail["params"]["token"]["default"] is None
    assert "hunter2" not in json.dumps(staff) + json.dumps(detail)
    assert "argv" not in detail and "env" not in detail
    assert detail["runs_url"] == "http://localhost/api/v1/commands/secretive/runs"
    assert_error(client.get("/api/v1/commands/admins-only", headers=bearer("staff")), 404, "not_found")
    assert_error(client.get("/api/v1/commands/nope", headers=bearer("staff")), 404, "not_found")


# --- starting and waiting ---------------------------------------------------------------------


@pytest.mark.both_engines  # runs: admission and the run row
def test_start_without_wait_is_202_with_absolute_urls_then_the_run(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    response = start(client, headers, "echo", {"args": ["Hello", "World!"]})
    assert response.status_code == 202
    accepted = response.get_json()
    assert set(accepted) == {"id", "status", "url", "stream_url"}
    assert accepted["url"] == f"http://localhost/api/v1/runs/{accepted['id']}" == response.headers["Location"]
    assert accepted["stream_url"] == f"http://localhost/api/v1/runs/{accepted['id']}/stream"
    run = wait_done(client, headers, accepted["id"])
    assert run["status"] == "succeeded" and run["exit_code"] == 0 and run["output"] == "Hello World!\n"
    assert run["user"] == "staff" and run["params"] == {"args": ["Hello", "World!"]} and run["cached"] is False


@pytest.mark.both_engines  # runs: the terminal write, awaited
def test_start_with_wait_returns_the_finished_run(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    response = start(client, headers, "echo", {"args": ["hi"]}, wait=20)
    assert response.status_code == 200
    run = response.get_json()
    assert run["status"] == "succeeded" and run["output"] == "hi\n"
    slow = start(client, headers, "nap", {"seconds": 5}, wait=0.3)
    assert slow.status_code == 202 and slow.get_json()["status"] == "running"
    client.post(f"/api/v1/runs/{slow.get_json()['id']}/cancel", headers=headers)


@pytest.mark.parametrize("wait", [-1, 61, "5", True, None, [1]])
def test_wait_outside_0_to_60_or_not_a_number_is_a_validation_error(api_app, bearer, wait):
    response = api_app.test_client().post(
        "/api/v1/commands/echo/runs", json={"params": {}, "wait": wait}, headers=bearer("staff")
    )
    assert_error(response, 400, "validation_error", "wait")


def test_bodies_are_strict(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    url = "/api/v1/commands/echo/runs"
    duplicate = b'{"params": {"args": ["a"]}, "params": {"args": ["b"]}}'
    assert_error(
        client.post(url, data=duplicate, content_type="application/json", headers=headers), 400, "validation_error"
    )
    nested = b'{"params": {"args": ["a"], "args": ["b"]}}'
    assert_error(
        client.post(url, data=nested, content_type="application/json", headers=headers), 400, "validation_error"
    )
    assert_error(
        client.post(url, data=b"{not json", content_type="application/json", headers=headers), 400, "validation_error"
    )
    assert_error(
        client.post(url, data=b"[1]", content_type="application/json", headers=headers), 400, "validation_error"
    )
    assert_error(
        client.post(url, data=b"params=x", content_type="application/x-www-form-urlencoded", headers=headers),
        415,
        "unsupported_media_type",
    )
    assert_error(client.post(url, json={"params": {}, "extra": 1}, headers=headers), 400, "validation_error", "extra")
    bad = assert_error(start(client, headers, "chatty", {"n": 0, "bogus": 1}), 400, "validation_error")
    assert set(bad["details"]) == {"n", "bogus"}  # every bad field is named
    big = b'{"params": {"args": ["' + b"a" * (17 * 1024 * 1024) + b'"]}}'
    assert_error(client.post(url, data=big, content_type="application/json", headers=headers), 413, "payload_too_large")


def test_flask_errors_under_api_use_the_json_shape(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    assert_error(client.get("/api/v1/nothing-here", headers=headers), 404, "not_found")
    response = client.delete("/api/v1/commands", headers=headers)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_rate_limit_is_429_with_retry_after(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    assert start(client, headers, "limited").status_code in (200, 202)
    response = start(client, headers, "limited")
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1


# --- reading others' runs, cancel, lists ------------------------------------------------------


@pytest.mark.both_engines  # runs: who sees a run
def test_someone_elses_run_is_404_and_admins_see_it(api_app, bearer):
    client = api_app.test_client()
    run_id = start(client, bearer("staff"), "echo", {"args": ["mine"]}).get_json()["id"]
    assert_error(client.get(f"/api/v1/runs/{run_id}", headers=bearer("other")), 404, "not_found")
    assert_error(client.get(f"/api/v1/runs/{run_id}/stream", headers=bearer("other")), 404, "not_found")
    assert_error(client.post(f"/api/v1/runs/{run_id}/cancel", headers=bearer("other")), 404, "not_found")
    assert client.get(f"/api/v1/runs/{run_id}", headers=bearer("admin")).get_json()["user"] == "staff"
    assert_error(client.get("/api/v1/runs/not-a-run", headers=bearer("staff")), 404, "not_found")


@pytest.mark.both_engines  # runs: cancel and the terminal write
def test_cancel_is_202_and_ends_the_run(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    run_id = start(client, headers, "nap", {"seconds": 30}).get_json()["id"]
    response = client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers)
    assert response.status_code == 202 and response.get_json()["id"] == run_id
    assert wait_done(client, headers, run_id)["status"] == "cancelled"
    assert_error(client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers), 409, "conflict")


@pytest.mark.both_engines  # runs: keyset paging and filters are SQL
def test_runs_list_pages_with_a_cursor_and_filters(api_app, bearer):
    client, staff = api_app.test_client(), bearer("staff")
    ids = [start(client, staff, "echo", {"args": [str(i)]}, wait=20).get_json()["id"] for i in range(5)]
    start(client, bearer("other"), "echo", {"args": ["theirs"]}, wait=20)
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/runs?limit=2" + (f"&cursor={cursor}" if cursor else ""), headers=staff).get_json()
        assert len(page["items"]) <= 2 and all("output" not in item for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # own runs only, newest first, no gaps or repeats
    everyone = client.get("/api/v1/runs?limit=500", headers=bearer("admin")).get_json()["items"]
    assert len(everyone) == 6
    assert client.get("/api/v1/runs?status=failed", headers=staff).get_json()["items"] == []
    assert len(client.get("/api/v1/runs?command=echo&status=succeeded", headers=staff).get_json()["items"]) == 5
    for query, field in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("status=bogus", "status"),
        ("cursor=garbage", "cursor"),
    ]:
        assert_error(client.get(f"/api/v1/runs?{query}", headers=staff), 400, "validation_error", field)


# --- long-poll and SSE ----------------------------------------------------------------------


@pytest.mark.both_engines  # runs: wake-ups (LISTEN/NOTIFY on PostgreSQL)
def test_long_poll_returns_when_the_run_finishes_not_at_the_deadline(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    run_id = start(client, headers, "nap", {"seconds": 1}).get_json()["id"]
    began = time.monotonic()
    run = client.get(f"/api/v1/runs/{run_id}?wait=30", headers=headers).get_json()
    took = time.monotonic() - began
    assert run["status"] == "succeeded"
    finished_after = run["duration_ms"] / 1000
    assert took < finished_after + 0.5, (took, finished_after)  # woken at the finish, not at 30 s
    assert_error(client.get(f"/api/v1/runs/{run_id}?wait=61", headers=headers), 400, "validation_error", "wait")


@pytest.mark.both_engines  # runs: wake-ups (LISTEN/NOTIFY on PostgreSQL)
def test_long_poll_that_times_out_returns_the_live_run(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    run_id = start(client, headers, "nap", {"seconds": 30}).get_json()["id"]
    began = time.monotonic()
    run = client.get(f"/api/v1/runs/{run_id}?wait=0.5", headers=headers).get_json()
    assert run["status"] == "running" and 0.4 < time.monotonic() - began < 5
    client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers)


def parse_sse(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events


@pytest.mark.both_engines  # runs: output chunks read by id
def test_sse_streams_output_status_and_end_and_resumes_without_loss_or_duplicates(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    run_id = start(client, headers, "chatty", {"n": 20}).get_json()["id"]
    response = client.get(f"/api/v1/runs/{run_id}/stream", headers=headers)
    assert response.mimetype == "text/event-stream"
    events = parse_sse(response.get_data(as_text=True))
    outputs = [e for e in events if e["event"] == "output"]
    ids = [int(e["id"]) for e in outputs]
    assert ids == sorted(set(ids)) and ids[0] == 1
    assert [e["event"] for e in events if e["event"] != "output"][-1] == "end"
    assert any(e["event"] == "status" and e["data"]["status"] == "running" for e in events)
    end = events[-1]["data"]
    assert end["status"] == "succeeded" and "output" not in end and end["id"] == run_id
    text = {s: "".join(e["data"]["text"] for e in outputs if e["data"]["stream"] == s) for s in ("stdout", "stderr")}
    assert text["stdout"] == "".join(f"out {i}\n" for i in range(20))
    assert text["stderr"] == "".join(f"err {i}\n" for i in range(20))
    # Resume after the third chunk: exactly the rest, from the database, then end.
    cut = ids[2]
    again = parse_sse(
        client.get(f"/api/v1/runs/{run_id}/stream", headers={**headers, "Last-Event-ID": str(cut)}).get_data(
            as_text=True
        )
    )
    resumed = [e for e in again if e["event"] == "output"]
    assert [int(e["id"]) for e in resumed] == [i for i in ids if i > cut]
    assert [e["data"] for e in outputs if int(e["id"]) <= cut] + [e["data"] for e in resumed] == [
        e["data"] for e in outputs
    ]
    assert again[-1]["event"] == "end"
    assert_error(
        client.get(f"/api/v1/runs/{run_id}/stream", headers={**headers, "Last-Event-ID": "x"}), 400, "validation_error"
    )


@pytest.mark.both_engines  # runs: output chunks read by id
def test_sse_disconnect_mid_run_then_resume_loses_nothing(api_app, bearer):
    """Read a live stream partway, drop it, resume with Last-Event-ID: the union is the whole output once."""
    client, headers = api_app.test_client(), bearer("staff")
    run_id = start(client, headers, "chatty", {"n": 30}).get_json()["id"]
    response = client.get(f"/api/v1/runs/{run_id}/stream", headers=headers, buffered=False)
    received = ""
    for piece in response.response:
        received += piece.decode() if isinstance(piece, bytes) else piece
        if received.count("event: output") >= 5:
            break
    response.close()
    first = [e for e in parse_sse(received) if e["event"] == "output"]
    last_id = first[-1]["id"]
    rest = parse_sse(
        client.get(f"/api/v1/runs/{run_id}/stream", headers={**headers, "Last-Event-ID": last_id}).get_data(
            as_text=True
        )
    )
    outputs = first + [e for e in rest if e["event"] == "output"]
    assert [int(e["id"]) for e in outputs] == list(range(1, len(outputs) + 1))
    stdout = "".join(e["data"]["text"] for e in outputs if e["data"]["stream"] == "stdout")
    assert stdout == "".join(f"out {i}\n" for i in range(30))


# --- auth -----------------------------------------------------------------------------------


def test_missing_or_bad_bearer_is_401_with_www_authenticate(api_app, people):
    client = api_app.test_client()
    for headers in ({}, {"Authorization": "Bearer gw_nothing_here"}, {"Authorization": "Basic YWRtaW46eA=="}):
        response = client.get("/api/v1/commands", headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_bearer_requests_get_no_session_cookie_and_update_last_used(api_app, people):
    from gateway.db.models import ApiToken
    from gateway.platform.extensions import db

    token_id, secret = issue_token(api_app, "staff")
    client = api_app.test_client()
    response = client.get("/api/v1/commands", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    response = start(client, {"Authorization": f"Bearer {secret}"}, "echo", {"args": ["x"]})  # unsafe, no CSRF
    assert response.status_code == 202 and "Set-Cookie" not in response.headers
    with api_app.app_context():
        assert db.session.get(ApiToken, token_id).last_used_at is not None


def test_the_api_refuses_to_start_on_sessions_it_cannot_keep_off_bearer_requests():
    """The no-cookie wrapper needs Flask's cookie sessions; anything else fails at start, not per request."""
    from flask import Flask
    from flask.sessions import SessionInterface

    from gateway.api.auth import TokenAwareSessions, init_app

    app = Flask(__name__)
    init_app(app)
    init_app(app)  # idempotent: wrapped once
    assert isinstance(app.session_interface, TokenAwareSessions)
    assert not isinstance(app.session_interface.inner, TokenAwareSessions)

    other = Flask(__name__)
    other.session_interface = SessionInterface()
    with pytest.raises(RuntimeError, match="cookie sessions"):
        init_app(other)


@pytest.mark.both_engines  # revocation, per engine
def test_revoked_token_and_disabled_user_stop_on_the_next_request(api_app, people):

    token_id, secret = issue_token(api_app, "staff")
    headers = {"Authorization": f"Bearer {secret}"}
    client = api_app.test_client()
    assert client.get("/api/v1/commands", headers=headers).status_code == 200
    with api_app.app_context():
        assert tokens.revoke(token_id)
    assert_error(client.get("/api/v1/commands", headers=headers), 401, "unauthorized")

    _, secret2 = issue_token(api_app, "other")
    headers2 = {"Authorization": f"Bearer {secret2}"}
    assert client.get("/api/v1/commands", headers=headers2).status_code == 200
    with api_app.app_context():
        accounts.set_active(accounts.get_user("other"), False)
    assert_error(client.get("/api/v1/commands", headers=headers2), 401, "unauthorized")


@pytest.mark.both_engines  # revocation, per engine
def test_token_revoked_mid_stream_ends_the_stream(api_app, people):

    api_app.config["API_KEEPALIVE_SECONDS"] = 0.2
    token_id, secret = issue_token(api_app, "staff")
    headers = {"Authorization": f"Bearer {secret}"}
    client = api_app.test_client()
    run_id = start(client, headers, "nap", {"seconds": 30}).get_json()["id"]
    response = client.get(f"/api/v1/runs/{run_id}/stream", headers=headers, buffered=False)
    pieces = iter(response.response)
    assert "retry" in str(next(pieces))
    with api_app.app_context():
        tokens.revoke(token_id)
    rest = "".join(p.decode() if isinstance(p, bytes) else p for p in pieces)  # ends on its own
    assert parse_sse(rest)[-1]["event"] == "error"
    response.close()
    admin = {"Authorization": f"Bearer {issue_token(api_app, 'admin')[1]}"}
    client.post(f"/api/v1/runs/{run_id}/cancel", headers=admin)


def test_browser_session_works_but_unsafe_methods_need_x_csrftoken(api_app, people):
    client = api_app.test_client()
    assert login_response(client, "staff", "staff-password-123").status_code == 302
    assert client.get("/api/v1/commands").status_code == 200
    refused = client.post("/api/v1/commands/echo/runs", json={"params": {"args": ["x"]}})
    assert_error(refused, 403, "forbidden", "X-CSRFToken")
    assert_error(
        client.post("/api/v1/commands/echo/runs", json={}, headers={"X-CSRFToken": "forged"}), 403, "forbidden"
    )
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    accepted = client.post(
        "/api/v1/commands/echo/runs", json={"params": {"args": ["x"]}}, headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 202


@pytest.mark.both_engines  # runs: wake-ups (LISTEN/NOTIFY on PostgreSQL)
def test_concurrent_long_polls_all_wake_at_the_finish(api_app, bearer):
    client, headers = api_app.test_client(), bearer("staff")
    run_id = start(client, headers, "nap", {"seconds": 1}).get_json()["id"]
    results: list[tuple[str, float]] = []

    def poll():
        began = time.monotonic()
        body = api_app.test_client().get(f"/api/v1/runs/{run_id}?wait=30", headers=headers).get_json()
        results.append((body["status"], time.monotonic() - began))

    threads = [threading.Thread(target=poll) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert [status for status, _ in results] == ["succeeded"] * 3
    assert max(took for _, took in results) < 5
