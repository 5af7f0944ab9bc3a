"""The attack suite: black-box requests an attacker would send, against the real app on both engines.

Each case asserts the answer, that nothing ran (no run row, no marker file, the
program saw one literal argument) and what the audit ledger recorded.  The
programs are the test interpreter printing its argv as JSON, so what a child
received is checked exactly.  Reading ``/proc/<parent>/environ`` from a command
is covered by tests/test_isolation.py (it needs a separate gateway process).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from tests.conftest import PASSWORDS, csrf_token_from, login_response, sample_value

pytestmark = pytest.mark.both_engines  # the attack suite runs against each engine

PY = sys.executable
ECHO = "import json,sys; print(json.dumps(sys.argv[1:]))"
OUTSIDE = {"REMOTE_ADDR": "10.66.0.1"}


def catalogue(tmp_path: Path) -> str:
    return textwrap.dedent(
        f"""
        datasources:
          ops:
            url_env: ATTACK_OPS_DB_URL
        commands:
          - name: echo
            title: Echo argv
            kind: shell
            argv: ["{PY}", "-c", "{ECHO}", "--", "{{word}}", "--n={{n}}", "--x={{x}}", "--flag={{flag}}",
                   "{{pick}}", "--day={{day}}", "{{items}}"]
            params:
              word: {{type: string, required: true}}
              n: {{type: integer, default: 1}}
              x: {{type: number, default: 1.5}}
              flag: {{type: boolean, default: false}}
              pick: {{type: choice, choices: [a, b], default: a}}
              day: {{type: date, default: "2024-01-01"}}
              items: {{type: list}}
          - name: args
            title: Shell2HTTP style
            kind: shell
            argv: ["{PY}", "-c", "{ECHO}", "--", "{{args}}"]
            params:
              args: {{type: list}}
          - name: show-log
            title: Shows a log file by name
            kind: shell
            argv: ["{PY}", "-c", "{ECHO}", "{{logfile}}", "{{report}}"]
            params:
              logfile: {{type: string, pattern: "[a-z0-9_-]+[.]log", default: app.log}}
              report: {{type: choice, choices: [daily.txt, weekly.txt], default: daily.txt}}
          - name: with-secret
            title: Takes a secret through the environment
            kind: shell
            argv: ["{PY}", "-c", "import os; print(len(os.environ['TOKEN']))"]
            env:
              TOKEN: "{{token}}"
            params:
              token: {{type: string, secret: true, required: true}}
          - name: cached-echo
            title: A status report whose result is shared for a minute
            kind: shell
            argv: ["{PY}", "-c", "{ECHO}", "--", "{{word}}"]
            params:
              word: {{type: string, required: true}}
            cache_seconds: 60
          - name: tasks
            title: Tasks by name
            kind: query
            datasource: ops
            sql: "SELECT id, name FROM tasks WHERE name = :name ORDER BY id"
            params:
              name: {{type: string, required: true}}
        """
    )


@pytest.fixture
def ops_db(tmp_path: Path) -> Path:
    path = tmp_path / "ops.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT)")
        connection.executemany("INSERT INTO tasks (name) VALUES (?)", [("alpha",), ("beta",)])
    return path


@pytest.fixture
def atk_env(tmp_path, ops_db, monkeypatch):
    monkeypatch.setenv("ATTACK_OPS_DB_URL", f"sqlite:///{ops_db}")
    path = tmp_path / "commands.yaml"
    path.write_text(catalogue(tmp_path))
    return {"GATEWAY_COMMANDS_FILE": path}


@pytest.fixture
def atk_app(make_app, atk_env, users):
    app = make_app(**atk_env)
    with app.app_context():
        groups.create_group("ops")
        for name in ("staff", "other"):
            groups.add_member("ops", name)
        for command in ("echo", "args", "show-log", "with-secret", "cached-echo", "tasks"):
            groups.add_grant("ops", command)
    return app


@pytest.fixture
def web(atk_app):
    """A browser on the attack app itself (the shared ``client`` fixture serves the default catalogue)."""
    return atk_app.test_client()


@pytest.fixture
def sign_in(web, users):
    def as_user(name: str):
        response = login_response(web, name, PASSWORDS[name])
        assert response.status_code == 302, response.get_data(as_text=True)
        return web

    return as_user


def bearer(app, username: str) -> tuple[int, dict[str, str]]:

    with app.app_context():
        issued = tokens.create_token(accounts.get_user(username), name="attack")
        return issued.token.id, {"Authorization": f"Bearer {issued.secret}"}


def api_run(client, headers, name: str, params: dict, wait: int = 20):
    return client.post(f"/api/v1/commands/{name}/runs", json={"params": params, "wait": wait}, headers=headers)


def audit_rows(app, event: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if event:
            query = query.where(AuditEvent.event == event)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def find_user(app, name: str) -> str | None:
    """The stored username that ``name`` resolves to, or None."""
    with app.app_context():
        try:
            return accounts.get_user(name).username
        except accounts.AccountError:
            return None


def run_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Run))


def assert_json_error(response, status: int, code: str):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"]["code"] == code, body
    return body["error"]


def printed_argv(run: dict) -> list[str]:
    assert run["status"] == "succeeded", run
    return json.loads(run["output"].strip().splitlines()[-1])


# --- forged client addresses ----------------------------------------------------------------

FORGERIES = [
    {"X-Forwarded-For": "127.0.0.1"},
    {"X-Real-IP": "127.0.0.1"},
    {"Forwarded": "for=127.0.0.1"},
    {"X-Forwarded-For": "127.0.0.1, 127.0.0.1", "X-Real-IP": "::1", "Forwarded": 'for="[::1]"'},
]


@pytest.mark.parametrize("headers", FORGERIES)
def test_forged_address_headers_without_trusted_proxies_change_nothing(make_app, users, headers):
    app = make_app(TRUSTED_PROXY_COUNT=0)
    client = app.test_client()
    response = client.get("/login", headers=headers, environ_base=OUTSIDE)
    assert response.status_code == 403
    denied = audit_rows(app, "access.denied_network")
    assert denied and denied[-1].source_ip == "10.66.0.1"
    # From loopback, a forged outside address is not recorded either: the ledger holds the real peer.
    assert login_response(client, "staff", PASSWORDS["staff"], headers={"X-Forwarded-For": "10.1.2.3"})
    assert audit_rows(app, "auth.login")[-1].source_ip == "127.0.0.1"


@pytest.mark.parametrize("headers", FORGERIES)
def test_one_trusted_proxy_honours_only_its_own_hop(make_app, users, headers):
    app = make_app(TRUSTED_PROXY_COUNT=1)
    client = app.test_client()
    # The proxy (loopback) appends the real client, 10.66.0.1; whatever the client forged sits to its left.
    forged = dict(headers)
    forged["X-Forwarded-For"] = ", ".join(filter(None, [headers.get("X-Forwarded-For"), "10.66.0.1"]))
    response = client.get("/login", headers=forged)
    assert response.status_code == 403
    assert audit_rows(app, "access.denied_network")[-1].source_ip == "10.66.0.1"
    # X-Real-IP and Forwarded are never read: from outside they change nothing.
    other_headers = {k: v for k, v in headers.items() if k != "X-Forwarded-For"}
    assert client.get("/login", headers=other_headers, environ_base=OUTSIDE).status_code == 403


# --- argument and shell injection -----------------------------------------------------------

PAYLOADS = [
    "; touch {marker}",
    "$(touch {marker})",
    "`touch {marker}`",
    "a && touch {marker} #",
    'x\' "y" | touch {marker}',
    "line1\ntouch {marker}",
    "*",
    "$HOME",
]


def test_shell_metacharacters_reach_the_program_as_one_literal_argument(atk_app, tmp_path):
    marker = tmp_path / "pwned"
    values = [payload.format(marker=marker) for payload in PAYLOADS if "\n" not in payload]
    _, headers = bearer(atk_app, "staff")
    client = atk_app.test_client()
    response = api_run(client, headers, "echo", {"word": values[0], "items": [*values, "-rf"]})
    assert response.status_code == 200, response.get_json()
    argv = printed_argv(response.get_json())
    assert argv[0] == "--" and argv[1] == values[0]
    assert argv[-len(values) - 1 :] == [*values, "-rf"]  # after "--": literal, never an option
    assert not marker.exists()
    started = audit_rows(atk_app, "run.started")[-1]
    assert started.params["word"] == values[0] and started.params["items"] == [*values, "-rf"]
    # A line break is refused outright (the other allowed answer), and nothing runs.
    response = api_run(client, headers, "echo", {"word": PAYLOADS[5].format(marker=marker)})
    assert_json_error(response, 400, "validation_error")
    assert run_count(atk_app) == 1 and not marker.exists()
    assert audit_rows(atk_app, "run.rejected")[-1].command == "echo"


TYPED_ATTACKS = [
    ("n", "1; touch /tmp/x"),
    ("n", "1 --evil"),
    ("x", "1e999999"),
    ("x", "nan"),
    ("flag", "true; rm -rf /"),
    ("pick", "a; touch /tmp/x"),
    ("pick", "c"),
    ("day", "2024-01-01; id"),
    ("day", "../../etc/passwd"),
    ("items", "not-a-list"),
]


def test_typed_params_refuse_injection_with_400_and_run_nothing(atk_app):
    _, headers = bearer(atk_app, "staff")
    for count, (field, value) in enumerate(TYPED_ATTACKS, start=1):
        response = api_run(atk_app.test_client(), headers, "echo", {"word": "ok", field: value})
        error = assert_json_error(response, 400, "validation_error")
        assert field in error["details"], error
        assert len(audit_rows(atk_app, "run.rejected")) == count
    assert run_count(atk_app) == 0


def test_web_form_injection_is_one_literal_argument(atk_app, web, sign_in, tmp_path):
    marker = tmp_path / "pwned"
    sign_in("staff")
    page = web.get("/commands/echo").get_data(as_text=True)
    value = f"$(touch {marker}); `id` -rf"
    response = web.post("/commands/echo", data={"csrf_token": csrf_token_from(page), "word": value})
    assert response.status_code == 303, response.get_data(as_text=True)
    run_id = response.headers["Location"].split("/runs/")[1].split("?")[0]
    run = web.get(f"/api/v1/runs/{run_id}?wait=20").get_json()
    # Exactly the catalogue's argv with the defaults filled in; the payload is one element, after "--";
    # the empty list param expands to no element at all.
    assert printed_argv(run) == ["--", value, "--n=1", "--x=1.5", "--flag=false", "a", "--day=2024-01-01"]
    assert not marker.exists()
    started = audit_rows(atk_app, "run.started")[-1]
    assert started.run_id == run_id and started.params["word"] == value


def test_shell2http_args_are_literal(atk_app, tmp_path):
    marker = tmp_path / "pwned"
    _, headers = bearer(atk_app, "staff")
    client = atk_app.test_client()
    value = f"; touch {marker}"
    response = client.post("/shell2http/args", json={"args": [value, "$(id)"]}, headers=headers)
    assert response.status_code == 202, response.get_json()
    result = client.get(f"/shell2http/args?key={response.get_json()['key']}&wait=true", headers=headers).get_json()
    assert json.loads(result["report"]) == ["--", value, "$(id)"]
    assert not marker.exists()


# --- SQL injection and path traversal -------------------------------------------------------


SQL_ATTACKS = ["x' OR '1'='1", "alpha' --", "x'; DROP TABLE tasks; --", "alpha\x00' OR 1=1"]


def test_sql_injection_in_query_params_is_a_bound_value(atk_app, ops_db):
    _, headers = bearer(atk_app, "staff")
    for value in SQL_ATTACKS:
        check_sql_attack(atk_app, headers, ops_db, value)


def check_sql_attack(atk_app, headers, ops_db, value):
    response = api_run(atk_app.test_client(), headers, "tasks", {"name": value})
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 200:
        run = response.get_json()
        assert run["status"] == "succeeded", run
        assert run["result"]["rows"] == []
        assert audit_rows(atk_app, "run.started")[-1].params["name"] == value
    with sqlite3.connect(ops_db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 2


def test_the_query_runs_normally_for_an_honest_value(atk_app):
    _, headers = bearer(atk_app, "staff")
    run = api_run(atk_app.test_client(), headers, "tasks", {"name": "alpha"}).get_json()
    assert run["result"]["rows"] == [[1, "alpha"]]


TRAVERSALS = [
    {"logfile": "../../etc/passwd"},
    {"logfile": "app.log/../../../etc/passwd"},
    {"logfile": "/etc/passwd"},
    {"logfile": "app.log\n../../etc/passwd"},
    {"report": "../../etc/passwd"},
    {"report": "daily.txt/../../etc/passwd"},
]


def test_path_traversal_in_file_naming_params_is_refused(atk_app):
    _, headers = bearer(atk_app, "staff")
    for params in TRAVERSALS:
        response = api_run(atk_app.test_client(), headers, "show-log", params)
        error = assert_json_error(response, 400, "validation_error")
        assert set(params) <= set(error["details"])
        assert audit_rows(atk_app, "run.rejected")[-1].command == "show-log"
    assert run_count(atk_app) == 0


# --- sign-in: redirects, CSRF, fixation, enumeration, brute force, look-alikes -------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "http:/evil.example",
        " //evil.example",
        "/\t/evil.example",
    ],
)
def test_open_redirect_in_next_lands_on_the_site(app, client, users, target):
    response = login_response(client, "staff", PASSWORDS["staff"], next=target)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert "evil" not in location.split("?")[0].lstrip("/").split("/")[0] or location.startswith("/%2F")


def test_an_on_site_next_is_followed(app, client, users):
    response = login_response(client, "staff", PASSWORDS["staff"], next="/runs?x=1")
    assert response.headers["Location"] == "/runs?x=1"


def state_changing_forms(app) -> list[str]:
    urls = []
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and not rule.rule.startswith(("/api/", "/shell2http/")):
            values = {arg: sample_value(rule, arg, "echo") for arg in rule.arguments}
            with app.test_request_context():
                urls.append(rule.build(values)[1])
    return urls


def test_csrf_every_form_refuses_a_post_without_token(atk_app, web, sign_in):
    sign_in("admin")
    before_runs, before_seq = run_count(atk_app), audit_rows(atk_app)[-1].seq
    urls = state_changing_forms(atk_app)
    assert len(urls) >= 20
    for url in urls:
        response = web.post(url, data={"word": "x", "name": "evil", "username": "evil", "password": "p" * 20})
        assert response.status_code == 400, f"POST {url} without CSRF -> {response.status_code}"
    assert run_count(atk_app) == before_runs
    assert [e.event for e in audit_rows(atk_app) if e.seq > before_seq] == []
    assert web.get("/admin/users").status_code == 200  # still signed in: logout was refused too
    assert find_user(atk_app, "evil") is None


def test_session_id_rotates_on_sign_in(app, client, users):
    client.get("/login")
    before = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    response = login_response(client, "staff", PASSWORDS["staff"])
    assert response.status_code == 302
    after = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    assert after is not None
    assert before is None or before.value != after.value
    assert audit_rows(app, "auth.login")[-1].actor_name == "staff"


def test_a_planted_session_cookie_is_not_signed_in_by_someone_elses_login(app, users):
    attacker, victim = app.test_client(), app.test_client()
    attacker.get("/login")
    name = app.config.get("SESSION_COOKIE_NAME", "session")
    planted = attacker.get_cookie(name)
    if planted is not None:
        victim.set_cookie(name, planted.value)
    assert login_response(victim, "staff", PASSWORDS["staff"]).status_code == 302
    assert attacker.get("/").status_code == 302  # the attacker's cookie did not become the victim's session


def test_unknown_user_and_wrong_password_get_the_same_answer(app, users):
    answers = []
    for name in ("staff", "nobody-here"):
        client = app.test_client()
        response = login_response(client, name, "wrong-password-1")
        text = response.get_data(as_text=True).replace(f'value="{name}"', 'value="N"')
        answers.append((response.status_code, text.replace(csrf_token_from(text), "T")))
    assert answers[0] == answers[1]
    failed = audit_rows(app, "auth.login_failed")
    assert len(failed) == 2 and all("wrong-password" not in json.dumps(e.detail) for e in failed)


def test_brute_force_locks_then_rate_limits_with_retry_after(make_app, users):
    app = make_app(LOGIN_MAX_ATTEMPTS=3, LOGIN_RATE_LIMIT="5/minute")
    client = app.test_client()
    statuses = [login_response(client, "admin", f"guess-{i}-password").status_code for i in range(5)]
    assert statuses == [401] * 5
    response = login_response(client, "admin", PASSWORDS["admin"])
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert client.get("/").status_code == 302
    assert audit_rows(app, "auth.locked")


@pytest.mark.slow
def test_lockout_cannot_lock_an_admin_out_forever(make_app, users):
    import time

    app = make_app(LOGIN_MAX_ATTEMPTS=2, LOGIN_LOCK_SECONDS=1, LOGIN_LOCK_MAX_SECONDS=1)
    client = app.test_client()
    for _ in range(3):  # the attacker keeps hammering: each round would double the lock without the cap
        for i in range(2):
            login_response(client, "admin", f"guess-{i}-password")
        time.sleep(1.1)
    assert login_response(client, "admin", PASSWORDS["admin"]).status_code == 302
    assert audit_rows(app, "auth.login")[-1].actor_name == "admin"


@pytest.mark.parametrize("spelling", ["STAFF", "Staff", "\uff53\uff54\uff41\uff46\uff46"])
def test_look_alike_spellings_are_the_same_account(app, client, users, spelling):
    assert login_response(client, spelling, PASSWORDS["staff"]).status_code == 302
    assert audit_rows(app, "auth.login")[-1].actor_name == "staff"


def test_creating_a_cyrillic_look_alike_account_is_refused(app, client, users, login):
    login("admin")
    page = client.get("/admin/users").get_data(as_text=True)
    look_alike = "st\u0430ff"  # Cyrillic a
    response = client.post(
        "/admin/users",
        data={"csrf_token": csrf_token_from(page), "username": look_alike, "password": "look-alike-password-1"},
    )
    assert response.status_code in (400, 409, 200, 303, 302)
    assert find_user(app, look_alike) in (None, "staff")
    assert not [e for e in audit_rows(app, "admin.user_created") if look_alike in json.dumps(e.detail or {})]


# --- tokens ---------------------------------------------------------------------------------


def test_token_reuse_after_revoke_and_after_disable_is_401(atk_app):

    client = atk_app.test_client()
    token_id, headers = bearer(atk_app, "staff")
    assert client.get("/api/v1/commands", headers=headers).status_code == 200
    with atk_app.app_context():
        tokens.revoke(token_id, actor={"id": None, "name": "cli:test"})
    assert_json_error(api_run(client, headers, "echo", {"word": "x"}), 401, "unauthorized")
    assert audit_rows(atk_app, "token.revoked")

    _, headers = bearer(atk_app, "other")
    with atk_app.app_context():
        accounts.set_active(accounts.get_user("other"), False, actor={"id": None, "name": "cli:test"})
    assert_json_error(api_run(client, headers, "echo", {"word": "x"}), 401, "unauthorized")
    assert client.post("/shell2http/args", json={"args": []}, headers=headers).status_code == 401
    assert run_count(atk_app) == 0


# --- log and audit injection ----------------------------------------------------------------


def test_newlines_and_ansi_are_stored_faithfully_and_rendered_inert(atk_app, web, sign_in):
    value = "ok<script>alert(1)</script>"
    forged_line = "x\n2024-01-01 INFO auth.login admin\x1b[31mRED"
    _, headers = bearer(atk_app, "staff")
    response = api_run(atk_app.test_client(), headers, "echo", {"word": value})
    assert response.status_code == 200, response.get_json()
    assert audit_rows(atk_app, "run.started")[-1].params["word"] == value
    # A line break in a string param is refused; the rejection keeps what was sent, as it was sent.
    assert api_run(atk_app.test_client(), headers, "echo", {"word": forged_line}).status_code == 400
    rejected = audit_rows(atk_app, "run.rejected")[-1]
    assert rejected.params is None or rejected.params.get("word") in (forged_line, None)
    sign_in("admin")
    page = web.get("/admin/audit?command=echo").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "\x1b" not in page


# --- bodies, content types, wait ------------------------------------------------------------


def test_oversized_body_is_413_json(make_app, atk_env, users):
    app = make_app(MAX_CONTENT_LENGTH=2048, **atk_env)
    _, headers = bearer(app, "staff")
    response = app.test_client().post(
        "/api/v1/commands/echo/runs", json={"params": {"word": "x" * 5000}}, headers=headers
    )
    assert_json_error(response, 413, "payload_too_large")
    assert run_count(app) == 0


@pytest.mark.parametrize(
    "data,content_type,status,code",
    [
        ("{not json", "application/json", 400, "validation_error"),
        ('{"params": {"word": "x"}', "application/json", 400, "validation_error"),
        ("[1, 2]", "application/json", 400, "validation_error"),
        ('{"params": "x"}', "application/json", 400, "validation_error"),
        ("\xff\xfe", "application/json", 400, "validation_error"),
        ("word=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('{"params": {"word": "x"}}', "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_malformed_json_and_wrong_content_types(atk_app, data, content_type, status, code):
    _, headers = bearer(atk_app, "staff")
    response = atk_app.test_client().post(
        "/api/v1/commands/echo/runs", data=data.encode("latin-1"), content_type=content_type, headers=headers
    )
    assert_json_error(response, status, code)
    assert run_count(atk_app) == 0


@pytest.mark.parametrize("wait", [61, 10**12, -1, 1e308, "60; id", True, float("inf")])
def test_huge_or_odd_wait_is_400(atk_app, wait):
    _, headers = bearer(atk_app, "staff")
    body = json.dumps({"params": {"word": "x"}, "wait": wait}).replace("Infinity", "1e999")
    response = atk_app.test_client().post(
        "/api/v1/commands/echo/runs", data=body, content_type="application/json", headers=headers
    )
    error = assert_json_error(response, 400, "validation_error")
    assert "wait" in error["details"]
    assert run_count(atk_app) == 0


@pytest.mark.parametrize("wait", ["61", "99999999999999999999", "-1", "nan", "inf", "1e9"])
def test_huge_wait_on_the_long_poll_is_400(atk_app, wait):
    _, headers = bearer(atk_app, "staff")
    client = atk_app.test_client()
    run = api_run(client, headers, "echo", {"word": "x"}).get_json()
    assert_json_error(client.get(f"/api/v1/runs/{run['id']}?wait={wait}", headers=headers), 400, "validation_error")


# --- unicode and NUL everywhere -------------------------------------------------------------

WEIRD = ["\x00", "a\x00b", "\u202eevil", "\U0001f4a3" * 50, "\ufdfa" * 200, "x" * 10000]


def test_unicode_and_nul_never_cause_a_500(atk_app):
    _, headers = bearer(atk_app, "staff")
    for value in WEIRD:
        check_weird_value(atk_app, headers, value)


def check_weird_value(atk_app, headers, value):
    client = atk_app.test_client()
    body = json.dumps({"params": {"word": value, "items": [value], "pick": value, "day": value}})
    answers = [
        client.post("/api/v1/commands/echo/runs", data=body, content_type="application/json", headers=headers),
        client.post(
            "/api/v1/commands/echo/runs",
            data=json.dumps({"params": {"word": value}}),
            content_type="application/json",
            headers=headers,
        ),
        client.get("/api/v1/runs", query_string={"command": value, "status": value, "cursor": value}, headers=headers),
        client.get("/api/v1/commands/" + value.replace("\x00", "%00")[:200], headers=headers),
        client.post(
            "/shell2http/args", data=json.dumps({"args": [value]}), content_type="application/json", headers=headers
        ),
    ]
    login_client = atk_app.test_client()
    answers.append(login_response(login_client, value, value))
    for response in answers:
        assert response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])


def test_unicode_and_nul_in_web_form_fields_never_cause_a_500(atk_app, web, sign_in):
    sign_in("staff")
    page = web.get("/commands/echo").get_data(as_text=True)
    for value in WEIRD:
        data = {"csrf_token": csrf_token_from(page), "word": value, "n": value, "pick": value, "items": value}
        response = web.post("/commands/echo", data=data)
        assert response.status_code < 500, (repr(value[:10]), response.status_code)


def test_a_lone_surrogate_in_a_json_param_is_a_400_not_a_500(atk_app):
    _, headers = bearer(atk_app, "staff")
    body = '{"params": {"word": "\\ud800"}}'
    response = atk_app.test_client().post(
        "/api/v1/commands/echo/runs", data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert run_count(atk_app) == 0
    with atk_app.app_context():
        from gateway.db.models import AuditEvent
        from gateway.platform.extensions import db

        rejected = db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == "run.rejected")).all()
        assert [event.params for event in rejected] == [{"word": "\ufffd"}]  # recorded, made encodable


# --- secrets --------------------------------------------------------------------------------


def test_a_secret_param_never_shows_in_audit_or_api_answers(atk_app):
    secret = "s3cr3t-value-that-must-not-leak"
    _, headers = bearer(atk_app, "staff")
    client = atk_app.test_client()
    response = api_run(client, headers, "with-secret", {"token": secret})
    run = response.get_json()
    assert run["status"] == "succeeded" and run["output"].strip() == str(len(secret))
    answers = [
        response,
        client.get(f"/api/v1/runs/{run['id']}", headers=headers),
        client.get("/api/v1/runs", headers=headers),
        client.get(f"/api/v1/runs/{run['id']}/stream", headers=headers),
    ]
    for answer in answers:
        assert secret not in answer.get_data(as_text=True)
    ledger = json.dumps([[e.params, e.detail] for e in audit_rows(atk_app)])
    assert secret not in ledger
    with atk_app.app_context():
        assert secret not in json.dumps([r.params for r in db.session.scalars(select(Run))])


# --- CSV formula injection ------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]


def csv_cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def test_csv_exports_neutralise_formulas(atk_app, web, sign_in):
    _, headers = bearer(atk_app, "staff")
    api = atk_app.test_client()
    run_ids = [api_run(api, headers, "tasks", {"name": formula}).get_json()["id"] for formula in FORMULAS[:1]]
    api_run(api, headers, "echo", {"word": FORMULAS[1], "items": FORMULAS})
    sign_in("admin")
    audit_csv = web.get("/admin/audit/export.csv")
    assert audit_csv.status_code == 200
    cells = csv_cells(audit_csv.get_data(as_text=True))
    assert any("HYPERLINK" in cell for cell in cells)
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@")), cell
    run_csv = web.get(f"/runs/{run_ids[0]}.csv")
    assert run_csv.status_code in (200, 404)


def test_run_csv_neutralises_formula_cells(atk_app, ops_db, web, sign_in):
    with sqlite3.connect(ops_db) as connection:
        connection.executemany("INSERT INTO tasks (name) VALUES (?)", [(f,) for f in FORMULAS])
    sign_in("staff")
    _, headers = bearer(atk_app, "staff")
    run_ids = []
    for formula in FORMULAS:
        run = api_run(atk_app.test_client(), headers, "tasks", {"name": formula}).get_json()
        assert run["result"]["rows"][0][1] == formula  # the API keeps the value as it is
        run_ids.append(run["id"])
    for run_id in run_ids:
        response = web.get(f"/runs/{run_id}.csv")
        assert response.status_code == 200
        for cell in csv_cells(response.get_data(as_text=True)):
            assert not cell.startswith(("=", "+", "-", "@")), cell


# --- no state change through GET ------------------------------------------------------------


def test_state_changing_routes_refuse_get(atk_app, web, sign_in):
    sign_in("staff")
    _, headers = bearer(atk_app, "staff")
    run = api_run(atk_app.test_client(), headers, "echo", {"word": "x"}).get_json()
    before = audit_rows(atk_app)[-1].seq
    for url in (
        "/logout",
        f"/runs/{run['id']}/cancel",
        "/tiles/echo/refresh",
        "/account/tokens",
        "/account/password",
        "/account/tokens/1/revoke",
    ):
        assert web.get(url).status_code in (404, 405), url
    assert web.get("/commands/echo?word=x").status_code == 200  # the form, not a run
    assert run_count(atk_app) == 1
    assert [e.event for e in audit_rows(atk_app) if e.seq > before] == []
    assert web.get("/account").status_code == 200  # still signed in


# --- other users' Shell2HTTP keys and cached results ----------------------------------------


def test_another_users_shell2http_key_is_404(atk_app):
    _, staff = bearer(atk_app, "staff")
    _, other = bearer(atk_app, "other")
    client = atk_app.test_client()
    key = client.post("/shell2http/args", json={"args": ["mine"]}, headers=staff).get_json()["key"]
    assert client.get(f"/shell2http/args?key={key}&wait=true", headers=staff).status_code == 200
    assert client.get(f"/shell2http/args?key={key}", headers=other).status_code == 404
    assert client.delete(f"/shell2http/args?key={key}", headers=other).status_code == 404
    # Asking for the same args gets the other user their own key, never the staff member's.
    mine = client.post("/shell2http/args", json={"args": ["mine"]}, headers=other).get_json()
    assert mine.get("key") != key


def test_another_users_cached_result_hides_who_ran_it_and_their_other_runs_stay_404(atk_app):
    """DESIGN.md cached results: a shared result shows the output, never its owner, address or params."""
    _, staff = bearer(atk_app, "staff")
    _, other = bearer(atk_app, "other")
    client = atk_app.test_client()
    owned = api_run(client, staff, "cached-echo", {"word": "status"}).get_json()
    assert owned["status"] == "succeeded" and owned["user"] == "staff" and owned["cached"] is False
    private = api_run(client, staff, "echo", {"word": "private"}).get_json()

    response = api_run(client, other, "cached-echo", {"word": "status"})
    assert response.status_code == 200, response.get_json()
    shared = response.get_json()
    assert shared["id"] == owned["id"] and shared["cached"] is True
    assert shared["output"] == owned["output"]
    assert (shared["user"], shared["source_ip"], shared["params"]) == (None, None, None)
    by_id = client.get(f"/api/v1/runs/{owned['id']}", headers=other).get_json()
    assert (by_id["user"], by_id["source_ip"], by_id["params"], by_id["cached"]) == (None, None, None, True)
    assert "staff" not in json.dumps([shared, by_id]) and "127.0.0.1" not in json.dumps([shared, by_id])

    # The owner's other runs do not exist for this user; the shared one cannot be cancelled by them.
    for method, url in (
        ("GET", f"/api/v1/runs/{private['id']}"),
        ("GET", f"/api/v1/runs/{private['id']}?wait=1"),
        ("GET", f"/api/v1/runs/{private['id']}/stream"),
        ("POST", f"/api/v1/runs/{private['id']}/cancel"),
        ("POST", f"/api/v1/runs/{owned['id']}/cancel"),
    ):
        assert_json_error(client.open(url, method=method, headers=other), 404, "not_found")
    listed = client.get("/api/v1/runs", headers=other).get_json()["items"]
    assert [run["id"] for run in listed] == []

    # The owner still sees everything; the ledger says who got the shared result, and nothing ran twice.
    assert client.get(f"/api/v1/runs/{owned['id']}", headers=staff).get_json()["user"] == "staff"
    hit = audit_rows(atk_app, "run.cache_hit")[-1]
    assert (hit.actor_name, hit.run_id, hit.outcome) == ("other", owned["id"], "cached")
    assert [e.run_id for e in audit_rows(atk_app, "run.started")] == [owned["id"], private["id"]]
    assert not audit_rows(atk_app, "run.cancel_requested")
