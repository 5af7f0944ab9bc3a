"""The authorization matrix: every surface that reads or acts on a run or a command gives one answer.

OliveTin's and Rundeck's advisories are mostly one surface (an API read, a
log download, a dashboard) deciding differently from the others.  Here each
caller asks every surface about the same run or command, and the answers are
compared with one table: ``A`` allowed, ``H`` hidden (404, or left out of a
list: the thing does not exist for them), ``F`` forbidden (403: they see it and
may not do this, e.g. approve their own request), ``N`` not signed in (401, or
the sign-in page).  The rules are gateway/policy.py's docstring.

Every command is fenced to 127.0.0.2 by ``allowed_networks`` while
``ALLOWED_NETWORKS`` admits all of loopback, so a request from 127.0.0.1 passes
the gate and is outside the command's networks.
"""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway.identity import accounts, groups, tokens
from tests.conftest import csrf_token_from, seed_session

pytestmark = pytest.mark.both_engines  # the authorization matrix, per engine

PY = sys.executable
INSIDE = "127.0.0.2"
OUTSIDE = "127.0.0.1"
# A list cursor (the API's and the approvals page's) from after every run: the first page's runs follow it.
LATEST = "9999-01-01T00:00:00Z%7Cffffffff-ffff-4fff-bfff-ffffffffffff"
PAGED = f"/approvals?waiting_cursor={LATEST}&requested_cursor={LATEST}"

CATALOGUE = f"""
datasources:
  ops:
    url_env: MATRIX_OPS_DB_URL
commands:
  - name: tasks
    title: Tasks
    kind: query
    datasource: ops
    sql: "SELECT id, name FROM tasks ORDER BY id"
    allowed_networks: ["{INSIDE}/32"]
  - name: status
    title: Status
    kind: shell
    argv: ["{PY}", "-c", "print('all good')"]
    cache_seconds: 3600
    dashboard: true
    allowed_networks: ["{INSIDE}/32"]
  - name: args
    title: Shell2HTTP style
    kind: shell
    argv: ["{PY}", "-c", "print('done')", "{{args}}"]
    params:
      args: {{type: list}}
    allowed_networks: ["{INSIDE}/32"]
  - name: task-names
    title: Task names (a list of choices; nobody is granted it)
    kind: query
    datasource: ops
    sql: "SELECT name FROM tasks ORDER BY name"
    cache_seconds: 60
    allowed_networks: ["{INSIDE}/32"]
  - name: pick
    title: Pick a task
    kind: shell
    argv: ["{PY}", "-c", "print('picked')", "{{task}}"]
    params:
      task: {{type: choice, choices_from: {{command: task-names, column: name}}}}
    allowed_networks: ["{INSIDE}/32"]
  - name: purge
    title: Needs a second person
    kind: shell
    argv: ["{PY}", "-c", "print('purged')"]
    allowed_networks: ["{INSIDE}/32"]
    approval: {{approvers: [leads]}}
schedules:
  - name: tasks-report
    command: tasks
    cron: "*/5 * * * *"
    dashboard: true
    notify: [matrix-hook]
notifications:
  - name: matrix-hook
    kind: webhook
    url_env: MATRIX_HOOK_URL
    secret_env: MATRIX_HOOK_SECRET
    on: [succeeded]
"""

# Who asks: (user, address, how their credentials stand).
ACTORS = {
    "owner": ("staff", INSIDE, "ok"),
    "other staff": ("other", INSIDE, "ok"),
    "admin": ("admin", INSIDE, "ok"),
    "owner outside": ("staff", OUTSIDE, "ok"),
    "admin outside": ("admin", OUTSIDE, "ok"),
    "disabled user": ("staff", INSIDE, "disabled"),
    "revoked token": ("staff", INSIDE, "revoked"),
}

# One row per surface, one letter per actor in ACTORS order:
#   owner, other staff, admin, owner outside, admin outside, disabled user, revoked token
# {P}: the owner's private run (a query, so it has a CSV); {S}: the owner's shared cached result;
# {K}: the owner's Shell2HTTP key; {R}: a run of schedule tasks-report (system:scheduler's, of the
# fenced query); {A}: the owner's request for approval of purge, which "other staff" approves (group
# leads) and the admin (not in leads) may only see.  (method, url, credential, allowed statuses, expected)
SURFACES = {
    "run page": ("GET", "/runs/{P}", "session", {200}, "AHAHHNN"),
    "run CSV": ("GET", "/runs/{P}.csv", "session", {200}, "AHAHHNN"),
    "run output text": ("GET", "/runs/{P}.txt", "session", {200}, "AHAHHNN"),
    "API get": ("GET", "/api/v1/runs/{P}", "token", {200}, "AHAHHNN"),
    "API long-poll": ("GET", "/api/v1/runs/{P}?wait=1", "token", {200}, "AHAHHNN"),
    "API stream": ("GET", "/api/v1/runs/{P}/stream", "token", {200}, "AHAHHNN"),
    "web cancel": ("POST", "/runs/{P}/cancel", "session", {303}, "AHAHHNN"),  # ended: a flash says so
    "API cancel": ("POST", "/api/v1/runs/{P}/cancel", "token", {409}, "AHAHHNN"),  # 409: it has ended
    # Keys resolve only among the caller's own runs (DESIGN.md): admins read others' runs elsewhere.
    "Shell2HTTP GET": ("GET", "/shell2http/args?key={K}", "token", {200}, "AHHHHNN"),
    "Shell2HTTP DELETE": ("DELETE", "/shell2http/args?key={K}", "token", {204}, "AHHHHNN"),
    "cached run page": ("GET", "/runs/{S}", "session", {200}, "AAAHHNN"),
    "cached run API": ("GET", "/api/v1/runs/{S}", "token", {200}, "AAAHHNN"),
    "cache-joined run": ("POST", "/api/v1/commands/status/runs", "token", {200}, "AAAHHNN"),
    "cached run cancel": ("POST", "/api/v1/runs/{S}/cancel", "token", {409}, "AHAHHNN"),
    "dashboard tile": ("GET", "/tiles/status", "session", {200}, "AAAHHNN"),
    "tile refresh": ("POST", "/tiles/status/refresh", "session", {303}, "AAAHHNN"),  # joins the cached result
    "dashboard": ("GET", "/", "session", {200}, "AAAHHNN"),
    "command form": ("GET", "/commands/tasks", "session", {200}, "AAAHHNN"),
    "API command": ("GET", "/api/v1/commands/tasks", "token", {200}, "AAAHHNN"),
    # A list of choices read by system:choices from a source nobody is granted: the command's decision.
    "API choices": ("GET", "/api/v1/commands/pick/choices/task", "token", {200}, "AAAHHNN"),
    "my runs": ("GET", "/runs", "session", {200}, "AHHHHNN"),  # one's own runs, admins included
    "API run list": ("GET", "/api/v1/runs", "token", {200}, "AHAHHNN"),
    "admin runs": ("GET", "/admin/runs", "session", {200}, "HHAHHNN"),
    "admin cancel": ("POST", "/admin/runs/{P}/cancel", "session", {303}, "HHAHHNN"),
    # The catalogue's definition, grants and kill switch are administration, not use: not fenced.
    "admin command": ("GET", "/admin/commands/tasks", "session", {200}, "HHAHANN"),
    "start (API)": ("POST", "/api/v1/commands/tasks/runs", "token", {202}, "AAAHHNN"),
    "start (form)": ("POST", "/commands/tasks", "session", {303}, "AAAHHNN"),
    "Shell2HTTP POST": ("POST", "/shell2http/args", "token", {202}, "AAAHHNN"),
    # A scheduled run is nobody's: everyone who may use its command sees it (DESIGN.md, System principals).
    "scheduled run page": ("GET", "/runs/{R}", "session", {200}, "AAAHHNN"),
    "scheduled run CSV": ("GET", "/runs/{R}.csv", "session", {200}, "AAAHHNN"),
    "scheduled run output text": ("GET", "/runs/{R}.txt", "session", {200}, "AAAHHNN"),
    "scheduled run API": ("GET", "/api/v1/runs/{R}", "token", {200}, "AAAHHNN"),
    "scheduled run stream": ("GET", "/api/v1/runs/{R}/stream", "token", {200}, "AAAHHNN"),
    "scheduled run cancel": ("POST", "/api/v1/runs/{R}/cancel", "token", {409}, "HHAHHNN"),  # ended; admins only
    "scheduled in my runs": ("GET", "/runs", "session", {200}, "HHHHHNN"),  # in nobody's
    "board": ("GET", "/tiles", "session", {200}, "AAAHHNN"),
    "schedule refresh": ("POST", "/schedules/tasks-report/refresh", "session", {303}, "AAAHHNN"),
    "API schedules": ("GET", "/api/v1/schedules", "token", {200}, "AAAHHNN"),
    "API schedule runs": ("GET", "/api/v1/schedules/tasks-report/runs", "token", {200}, "AAAHHNN"),
    "admin schedules": ("GET", "/admin/schedules", "session", {200}, "HHAHANN"),
    "admin pause": ("POST", "/admin/schedules/tasks-report/pause", "session", {303}, "HHAHANN"),
    "admin resume": ("POST", "/admin/schedules/tasks-report/resume", "session", {303}, "HHAHANN"),
    # The outbox's bookkeeping (no output, no URL): administration, like /admin/schedules. {D}: the
    # delivery the scheduled run's end enqueued.
    "admin deliveries": ("GET", "/admin/deliveries", "session", {200}, "HHAHANN"),
    "admin delivery retry": ("POST", "/admin/deliveries/{D}/retry", "session", {303}, "HHAHANN"),
    # One's own second factors, and an admin's reset of someone else's ({U}: the other staff member).
    "MFA page": ("GET", "/account/mfa", "session", {200}, "AAAAANN"),
    "admin MFA reset": ("POST", "/admin/users/{U}/reset-mfa", "session", {303}, "HHAHANN"),
    # Four eyes: the requester and the approvers see the request; only an approver decides, only the
    # requester withdraws; nobody decides their own; admins are no approvers by rank (DESIGN.md, Approvals).
    # Rows run in order: once one decides, the later ones find the request decided (409; the web flashes it).
    "request page": ("GET", "/runs/{A}", "session", {200}, "AAAHHNN"),
    "request API": ("GET", "/api/v1/runs/{A}", "token", {200}, "AAAHHNN"),
    "approvals page": ("GET", "/approvals", "session", {200}, "AAHHHNN"),  # mine, or waiting for me
    "approvals page, paged": ("GET", PAGED, "session", {200}, "AAHHHNN"),  # a cursor moves a list, not the policy
    "API approvals": ("GET", "/api/v1/approvals", "token", {200}, "HAHHHNN"),  # waiting for my decision
    "API my requests": ("GET", "/api/v1/approvals?scope=requested", "token", {200}, "AHHHHNN"),
    "API approve": ("POST", "/api/v1/runs/{A}/approve", "token", {200, 409}, "FAFHHNN"),
    "API deny": ("POST", "/api/v1/runs/{A}/deny", "token", {200, 409}, "FAFHHNN"),
    "API withdraw": ("POST", "/api/v1/runs/{A}/withdraw", "token", {200, 409}, "AFFHHNN"),
    "web approve": ("POST", "/runs/{A}/approve", "session", {303}, "FAFHHNN"),
    "web deny": ("POST", "/runs/{A}/deny", "session", {303}, "FAFHHNN"),
    "web withdraw": ("POST", "/runs/{A}/withdraw", "session", {303}, "AFFHHNN"),
}
# For list surfaces "allowed" means the thing is listed: what marks it in the answer.
LISTED = {
    "dashboard": 'id="tile-status"',
    "my runs": "{P}",
    "API run list": "{P}",
    "admin runs": "{P}",
    "scheduled in my runs": "{R}",
    "board": 'id="tile-schedule-tasks-report"',
    "API schedules": '"name":"tasks-report"',
    "API schedule runs": "{R}",
    "approvals page": "{A}",
    "approvals page, paged": "{A}",
    "API approvals": "{A}",
    "API my requests": "{A}",
    "admin deliveries": 'id="delivery-{D}"',
}
BODIES = {
    "cache-joined run": {"params": {}},
    "start (API)": {"params": {}},
    "Shell2HTTP POST": {"args": ["x"], "force_unique_key": True},
    "API approve": {"comment": "matrix"},
    "API deny": {"comment": "matrix"},
    "API withdraw": {},
}


@dataclass
class World:
    app: Flask
    ids: dict[str, str]


@pytest.fixture
def world(make_app, users, tmp_path: Path, monkeypatch) -> World:
    """The owner (staff) ran a private query, a shared cached report and a Shell2HTTP command from inside."""
    ops = tmp_path / "ops.db"
    with sqlite3.connect(ops) as connection:
        connection.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO tasks (name) VALUES ('alpha')")
    monkeypatch.setenv("MATRIX_OPS_DB_URL", f"sqlite:///{ops}")
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(textwrap.dedent(CATALOGUE))
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue)
    with app.app_context():
        groups.create_group("ops")
        for name in ("staff", "other"):
            groups.add_member("ops", name)
        for command in ("tasks", "status", "args", "pick", "purge"):
            groups.add_grant("ops", command)
        groups.create_group("leads")
        groups.add_member("leads", "other")
    owner = token_headers(app, "staff")
    client = app.test_client()
    inside = {"REMOTE_ADDR": INSIDE}

    def finished(response) -> str:
        assert response.status_code in (200, 202), response.get_data(as_text=True)
        run_id = response.get_json()["id"]
        done = client.get(f"/api/v1/runs/{run_id}?wait=20", headers=owner, environ_base=inside).get_json()
        assert done["status"] == "succeeded", done
        return run_id

    start = "/api/v1/commands/{}/runs"
    private = finished(client.post(start.format("tasks"), json={"params": {}}, headers=owner, environ_base=inside))
    shared = finished(client.post(start.format("status"), json={"params": {}}, headers=owner, environ_base=inside))
    posted = client.post("/shell2http/args", json={"args": ["mine"]}, headers=owner, environ_base=inside)
    assert posted.status_code == 202, posted.get_data(as_text=True)
    key = posted.get_json()["key"]
    done = client.get(f"/shell2http/args?key={key}&wait=true", headers=owner, environ_base=inside).get_json()
    assert done["returncode"] == 0, done
    scheduled = scheduled_run(app)
    assert client.get(f"/api/v1/runs/{scheduled}?wait=20", headers=owner, environ_base=inside).status_code == 200
    requested = client.post(start.format("purge"), json={"params": {}}, headers=owner, environ_base=inside)
    assert requested.status_code == 202 and requested.get_json()["status"] == "pending_approval"
    ids = {
        "P": private,
        "S": shared,
        "K": key,
        "U": str(users["other"].id),
        "R": scheduled,
        "D": delivery_of(app, scheduled),
        "A": requested.get_json()["id"],
    }
    return World(app=app, ids=ids)


def scheduled_run(app: Flask) -> str:
    """One occurrence of tasks-report, run by the app's scheduler (clock moved to just after it)."""
    from gateway.db.models import Run
    from gateway.platform.extensions import db
    from gateway.schedules import Scheduler

    start = datetime(2026, 1, 1, 10, 1, tzinfo=UTC)
    scheduler = Scheduler(app, clock=lambda: start)
    for at in (start, start + timedelta(minutes=4, seconds=1)):
        scheduler.clock = lambda at=at: at
        with app.app_context():
            scheduler.tick()
            db.session.remove()
    with app.app_context():
        run_id = db.session.scalar(select(Run.id).where(Run.username == "system:scheduler"))
    assert run_id is not None
    return str(run_id)


def delivery_of(app: Flask, run_id: str) -> str:
    """The delivery a run's end enqueued (its notification has no URL here: it waits, failing as unconfigured)."""
    from gateway.db.outbox import Delivery
    from gateway.platform.extensions import db

    with app.app_context():
        delivery_id = db.session.scalar(select(Delivery.id).where(Delivery.run_id == run_id))
    assert delivery_id is not None
    return str(delivery_id)


def token_headers(app: Flask, username: str) -> dict[str, str]:
    with app.app_context():
        issued = tokens.create_token(accounts.get_user(username), name="matrix")
    return {"Authorization": f"Bearer {issued.secret}"}


@dataclass
class Caller:
    web: FlaskClient
    headers: dict[str, str]
    address: str


def as_actor(world: World, users, actor: str) -> Caller:
    """A browser and a token for the actor, in the state the row names (disabled, token revoked)."""
    username, address, state = ACTORS[actor]
    app = world.app
    web = app.test_client()
    if state != "revoked":
        seed_session(app, web, users[username].id)
    headers = token_headers(app, username)
    with app.app_context():
        if state == "disabled":
            accounts.set_active(accounts.get_user(username), False, actor={"id": None, "name": "cli:test"})
        if state == "revoked":
            for token in tokens.tokens_of(accounts.get_user(username)):
                tokens.revoke(token.id, actor={"id": None, "name": "cli:test"})
    return Caller(web=web, headers=headers, address=address)


def csrf_for(caller: Caller) -> str:
    environ = {"REMOTE_ADDR": caller.address}
    page = caller.web.get("/account", environ_base=environ)
    if page.status_code != 200:
        page = caller.web.get("/login", environ_base=environ)
    return csrf_token_from(page.get_data(as_text=True))


def ask(world: World, caller: Caller, surface: str, csrf: str) -> str:
    """The decision a surface gave: A, H or N (or the unexpected status and body, which fails the comparison)."""
    method, template, credential, allowed, _ = SURFACES[surface]
    url = template.format(**world.ids)
    environ = {"REMOTE_ADDR": caller.address}
    if credential == "token":
        body = BODIES.get(surface)
        response = caller.web.open(url, method=method, json=body, headers=caller.headers, environ_base=environ)
    else:
        data = {"csrf_token": csrf} if method == "POST" else None
        response = caller.web.open(url, method=method, data=data, environ_base=environ)
    text = response.get_data(as_text=True)
    status = response.status_code
    if status == 401 or (status == 302 and response.headers["Location"].startswith("/login")):
        return "N"
    if status == 404:
        return "H"
    if status == 403:
        return "F"
    if status not in allowed:
        return f"{status}: {' '.join(text.split())[:120]}"  # neither allowed nor refused the way every surface refuses
    if surface in LISTED:
        return "A" if LISTED[surface].format(**world.ids) in text else "H"
    if surface == "cache-joined run":
        assert response.get_json()["id"] == world.ids["S"], "the shared result was not joined"
    return "A"


@pytest.mark.parametrize("actor", list(ACTORS))
def test_every_surface_gives_the_same_decision(world, users, actor):
    caller = as_actor(world, users, actor)
    csrf = csrf_for(caller)
    column = list(ACTORS).index(actor)
    expected = {surface: row[4][column] for surface, row in SURFACES.items()}
    answered = {surface: ask(world, caller, surface, csrf) for surface in SURFACES}
    wrong = [
        f"{surface}: want {expected[surface]}, got {got}"
        for surface, got in answered.items()
        if got != expected[surface]
    ]
    assert wrong == [], f"{actor}:\n" + "\n".join(wrong)


def test_the_table_covers_every_route_that_takes_a_run_or_a_command(world):
    """A new route that looks up a run or a command by name must join the matrix (or say here why not)."""
    adapter = world.app.url_map.bind("localhost")
    covered = set()
    for method, template, *_ in SURFACES.values():
        endpoint, _ = adapter.match(template.split("?")[0].format(**world.ids), method=method)
        covered.add(endpoint)
    not_a_run_or_command = {  # group names
        "admin.delete_group",
        "admin.add_member",
        "admin.remove_member",
        "admin.link_idp_group",
        "admin.unlink_idp_group",
    }
    kill_switch = {"admin.disable_command", "admin.enable_command"}  # administration, admin only, like /admin/commands
    taking = {rule.endpoint for rule in world.app.url_map.iter_rules() if rule.arguments & {"run_id", "name"}}
    assert taking - covered - not_a_run_or_command - kill_switch == set()


def test_the_oidc_sign_in_routes_decide_nothing_about_runs_or_commands(make_app, users, idp):
    """/login/oidc and its callback are the same door for every actor: they never show or grant a run or a command.

    Signed-in users starting a sign-in go where ``next`` says (the page there
    decides, as in the table above); anyone else goes to the IdP; a callback
    that answers no sign-in this browser started is refused alike.
    """
    app = make_app(**idp.settings())
    answers = {}
    for actor in ("anonymous", "staff", "admin", "disabled"):
        web = app.test_client()
        if actor != "anonymous":
            seed_session(app, web, users["admin" if actor == "admin" else "other"].id)
        if actor == "disabled":
            with app.app_context():
                accounts.set_active(accounts.get_user("other"), False, actor={"id": None, "name": "cli:test"})
        start = web.get("/login/oidc?next=/admin/users")
        callback = web.get("/login/oidc/callback?code=x&state=y")
        to_idp = start.status_code == 302 and start.headers["Location"].startswith(idp.issuer)
        answers[actor] = ("idp" if to_idp else start.headers.get("Location"), callback.status_code)
    assert answers == {
        "anonymous": ("idp", 400),
        "staff": ("/admin/users", 400),  # and /admin/users itself answers staff 404, as everywhere
        "admin": ("/admin/users", 400),
        "disabled": ("idp", 400),
    }
