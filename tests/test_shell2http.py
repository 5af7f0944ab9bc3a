"""Flask-Shell2HTTP 1.9 compatibility, driven the way its own examples drive it (JSON bodies, result_url)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.identity import accounts, groups
from gateway.platform import signals
from tests.test_api_runs import csrf_token_from, issue_token, login_response

PY = sys.executable
CATALOGUE = textwrap.dedent(
    f"""
    commands:
      - name: saythis
        title: echo
        kind: shell
        argv: ["echo", "{{args}}"]
        params:
          args: {{type: list, pattern: "[A-Za-z0-9 !.,@-]*"}}
      - name: split
        title: stdout and stderr
        kind: shell
        argv: ["{PY}", "-c", "import sys; print('to out'); print('to err', file=sys.stderr); sys.exit(int(sys.argv[1]))", "{{args}}"]
        params:
          args: {{type: list, pattern: "[0-9]+"}}
      - name: pidsleep
        title: Prints its pid and sleeps
        kind: shell
        argv: ["sh", "-c", "echo $$; exec sleep \\"$1\\"", "pidsleep", "{{args}}"]
        params:
          args: {{type: list, pattern: "[0-9.]+", max_items: 1}}
        timeout: 30
      - name: digest
        title: sha256 of an upload
        kind: shell
        argv: ["sha256sum", "{{inputfile}}", "{{args}}"]
        params:
          inputfile: {{type: file}}
          args: {{type: list, pattern: "[a-z/]*"}}
      - name: noargs
        title: No args param
        kind: shell
        argv: ["true"]
      - name: not-installed
        title: A program that is not installed
        kind: shell
        argv: ["/nonexistent/program", "{{args}}"]
        params:
          args: {{type: list}}
    """
)


@pytest.fixture
def s2h_app(make_app, tmp_path: Path):
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=path, RUN_HEARTBEAT_SECONDS=1)


@pytest.fixture
def staff(s2h_app):

    with s2h_app.app_context():
        for name in ("staff", "other"):
            accounts.create_user(name, f"{name}-password-123")
        groups.create_group("ops")
        for name in ("staff", "other"):
            groups.add_member("ops", name)
        for command in ("saythis", "split", "pidsleep", "digest", "noargs", "not-installed"):
            groups.add_grant("ops", command)
    return {"Authorization": f"Bearer {issue_token(s2h_app, 'staff')[1]}"}


@pytest.fixture
def other(s2h_app, staff):
    return {"Authorization": f"Bearer {issue_token(s2h_app, 'other')[1]}"}


def result(client, headers, url, wait=True):
    path = url.replace("http://localhost", "")
    if wait:
        path = path.replace("wait=false", "wait=true")
    return client.get(path, headers=headers)


def test_the_seed_example_post_then_result(s2h_app, staff):
    client = s2h_app.test_client()
    data = {"args": ["Hello", "World!"], "timeout": 60, "force_unique_key": False}
    response = client.post("/shell2http/saythis", json=data, headers=staff)
    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == {"key", "result_url", "status"} and body["status"] == "running"
    assert body["result_url"] == f"http://localhost/shell2http/saythis?key={body['key']}&wait=false"
    report = result(client, staff, body["result_url"]).get_json()
    assert set(report) == {"key", "report", "error", "returncode", "start_time", "end_time", "process_time"}
    assert report["key"] == body["key"] and report["report"] == "Hello World!\n"
    assert report["error"] is None and report["returncode"] == 0
    assert isinstance(report["start_time"], float) and report["end_time"] >= report["start_time"]
    assert abs(report["process_time"] - (report["end_time"] - report["start_time"])) < 1e-6
    assert abs(report["start_time"] - time.time()) < 60
    again = result(client, staff, body["result_url"], wait=False).get_json()  # readable more than once
    assert again == report


def test_report_is_stdout_and_error_is_stderr(s2h_app, staff):
    client = s2h_app.test_client()
    body = client.post("/shell2http/split", json={"args": ["3"], "force_unique_key": True}, headers=staff).get_json()
    report = result(client, staff, body["result_url"]).get_json()
    assert report["report"] == "to out\n" and report["error"] == "to err\n" and report["returncode"] == 3


def test_running_shape_and_derived_key_conflicts_while_running(s2h_app, staff, other):
    client = s2h_app.test_client()
    first = client.post("/shell2http/pidsleep", json={"args": ["30"]}, headers=staff)
    key = first.get_json()["key"]
    running = result(client, staff, first.get_json()["result_url"], wait=False).get_json()
    assert running == {"status": "running", "key": key, "result_url": first.get_json()["result_url"]}
    second = client.post("/shell2http/pidsleep", json={"args": ["30"]}, headers=staff)
    assert second.status_code == 400
    assert second.get_json()["key"] == key and "error" in second.get_json() and "result_url" in second.get_json()
    # Another user asking the same thing gets their own key, and cannot read the first one.
    theirs = client.post("/shell2http/pidsleep", json={"args": ["30"]}, headers=other)
    assert theirs.status_code == 202 and theirs.get_json()["key"] != key
    assert client.get(f"/shell2http/pidsleep?key={key}", headers=other).status_code == 404
    assert client.delete(f"/shell2http/pidsleep?key={key}", headers=other).status_code == 404
    unique = client.post("/shell2http/pidsleep", json={"args": ["30"], "force_unique_key": True}, headers=staff)
    assert unique.status_code == 202 and unique.get_json()["key"] not in (key, theirs.get_json()["key"])
    for headers, k in ((staff, key), (other, theirs.get_json()["key"]), (staff, unique.get_json()["key"])):
        assert client.delete(f"/shell2http/pidsleep?key={k}", headers=headers).status_code == 204


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between the lookup and the read
        return True


def test_delete_really_kills_the_process(s2h_app, staff):
    client = s2h_app.test_client()
    body = client.post("/shell2http/pidsleep", json={"args": ["30"]}, headers=staff).get_json()
    from gateway import runs
    from gateway.db.models import Run
    from gateway.platform.extensions import db

    with s2h_app.app_context():
        deadline = time.monotonic() + 10
        while True:
            db.session.rollback()
            run = db.session.query(Run).one()
            text = runs.output_text(run.id)
            if text.strip() or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    pid = int(text.strip())
    assert not pid_gone(pid)
    assert client.delete(f"/shell2http/pidsleep?key={body['key']}", headers=staff).status_code == 204
    deadline = time.monotonic() + 10
    while not pid_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_gone(pid)
    report = result(client, staff, body["result_url"]).get_json()
    assert report["key"] == body["key"] and report["returncode"] != 0
    with s2h_app.app_context():
        db.session.rollback()
        assert db.session.query(Run).one().status == "cancelled"


def test_wait_true_is_bounded_by_the_timeout_and_timeout_only_lowers(s2h_app, staff):
    client = s2h_app.test_client()
    body = client.post("/shell2http/pidsleep", json={"args": ["20"], "timeout": 1}, headers=staff).get_json()
    began = time.monotonic()
    report = result(client, staff, body["result_url"]).get_json()
    assert time.monotonic() - began < 6  # the run was cut at 1 s, far below the catalogue's 30 s
    assert report.get("returncode") is not None or report.get("status") == "running"
    from gateway.db.models import Run
    from gateway.platform.extensions import db

    big = client.post("/shell2http/saythis", json={"args": ["x"], "timeout": 999999}, headers=staff)
    assert big.status_code == 202
    with s2h_app.app_context():
        timeouts = sorted(run.timeout_seconds for run in db.session.query(Run))
    assert timeouts == [1.0, 60.0]  # 999999 was capped at the catalogue's 60


def finished(client, headers, url) -> dict:
    """The report once the run has ended (a long-poll bounded by a short timeout may answer "running")."""
    deadline = time.monotonic() + 20
    while (report := result(client, headers, url).get_json()).get("status") == "running":
        assert time.monotonic() < deadline, report
    return report


def test_error_is_the_runs_own_failure_when_it_has_one(s2h_app, staff):
    # Flask-Shell2HTTP clients read `error` to learn why a job ended; a timeout is not "no error".
    client = s2h_app.test_client()
    timed = client.post("/shell2http/pidsleep", json={"args": ["20"], "timeout": 1}, headers=staff).get_json()
    report = finished(client, staff, timed["result_url"])
    assert report["error"] == "command timedout after 1 seconds." and report["returncode"] is not None
    slow = client.post("/shell2http/pidsleep", json={"args": ["20"], "force_unique_key": True}, headers=staff)
    key = slow.get_json()["key"]
    assert client.delete(f"/shell2http/pidsleep?key={key}", headers=staff).status_code == 204
    cancelled = finished(client, staff, slow.get_json()["result_url"])
    assert cancelled["error"] in ("cancelled", "cancelled before it started")
    missing = client.post("/shell2http/not-installed", json={"args": []}, headers=staff).get_json()
    never = finished(client, staff, missing["result_url"])
    assert never["error"] == "program not found: /nonexistent/program" and never["returncode"] is None
    # A command that fails on its own still reports its stderr (see test_report_is_stdout_and_error_is_stderr).


def test_callback_context_reaches_run_finished(s2h_app, staff):
    seen = []

    def receiver(sender, run, callback_context):
        seen.append((run.id, callback_context))

    signals.run_finished.connect(receiver)
    try:
        client = s2h_app.test_client()
        body = client.post(
            "/shell2http/saythis", json={"args": ["cb"], "callback_context": {"ticket": 42}}, headers=staff
        ).get_json()
        result(client, staff, body["result_url"])
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        signals.run_finished.disconnect(receiver)
    assert seen and seen[0][1] == {"ticket": 42}


def test_errors_use_the_shell2http_shape(s2h_app, staff):
    client = s2h_app.test_client()
    cases = [
        client.post("/shell2http/saythis", json={"args": "not a list"}, headers=staff),
        client.post("/shell2http/saythis", json={"args": ["$(id)"]}, headers=staff),
        client.post("/shell2http/saythis", json={"args": [], "bogus": 1}, headers=staff),
        client.post("/shell2http/saythis", json={"args": [], "timeout": -1}, headers=staff),
        client.post(
            "/shell2http/saythis", data=b'{"args": [], "args": []}', content_type="application/json", headers=staff
        ),
        client.post("/shell2http/saythis", data=b"{nope", content_type="application/json", headers=staff),
        client.get("/shell2http/saythis", headers=staff),
        client.get("/shell2http/saythis?key=abc&wait=maybe", headers=staff),
    ]
    for response in cases:
        assert response.status_code == 400, response.get_data(as_text=True)
        assert isinstance(response.get_json()["error"], str)
    for response in (
        client.get("/shell2http/saythis?key=" + "0" * 32, headers=staff),
        client.post("/shell2http/noargs", json={}, headers=staff),
        client.post("/shell2http/missing", json={}, headers=staff),
    ):
        assert response.status_code == 404 and isinstance(response.get_json()["error"], str)
    put = client.put("/shell2http/saythis", headers=staff)
    assert put.status_code == 405 and isinstance(put.get_json()["error"], str)
    anonymous = client.post("/shell2http/saythis", json={"args": []})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")


def test_multipart_upload_maps_at_filename_onto_the_file_param(s2h_app, staff):
    client = s2h_app.test_client()
    content = b"file contents\n" * 10
    data = {"inputfile": (io.BytesIO(content), "notes.txt"), "request_json": json.dumps({"args": ["@inputfile"]})}
    response = client.post("/shell2http/digest", data=data, content_type="multipart/form-data", headers=staff)
    assert response.status_code == 202, response.get_json()
    report = result(client, staff, response.get_json()["result_url"]).get_json()
    assert report["returncode"] == 0
    digest, path = report["report"].split()
    assert digest == hashlib.sha256(content).hexdigest()
    assert not os.path.exists(path)  # the run's upload folder is removed when it ends
    stray = {"inputfile": (io.BytesIO(b"x"), "x.txt"), "request_json": json.dumps({"args": []})}
    refused = client.post("/shell2http/digest", data=stray, content_type="multipart/form-data", headers=staff)
    assert refused.status_code == 400 and "inputfile" in refused.get_json()["error"]


def test_session_callers_need_x_csrftoken(s2h_app, staff):
    client = s2h_app.test_client()
    assert login_response(client, "staff", "staff-password-123").status_code == 302
    refused = client.post("/shell2http/saythis", json={"args": ["x"]})
    assert refused.status_code == 403 and isinstance(refused.get_json()["error"], str)
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    assert client.post("/shell2http/saythis", json={"args": ["x"]}, headers={"X-CSRFToken": token}).status_code == 202


@pytest.mark.parametrize("nameless", ["field", "file"])
def test_a_multipart_part_without_a_name_is_refused_not_a_500(s2h_app, staff, nameless):
    """Found by schemathesis: werkzeug names such a part None, which broke sorting the unknown fields."""
    part = (
        b"Content-Disposition: form-data\r\n\r\nvalue\r\n"
        if nameless == "field"
        else b'Content-Disposition: form-data; filename="a.txt"\r\n\r\nfile\r\n'
    )
    body = (
        b'--B\r\nContent-Disposition: form-data; name="request_json"\r\n\r\n{"args": ["x"]}\r\n'
        + b"--B\r\n"
        + part
        + b"--B--\r\n"
    )
    response = s2h_app.test_client().post(
        "/shell2http/saythis", data=body, content_type="multipart/form-data; boundary=B", headers=staff
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "(unnamed)" in response.get_json()["error"]
