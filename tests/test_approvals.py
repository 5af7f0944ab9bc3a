"""Four-eyes approvals, black-box over HTTP: request, approve, deny, withdraw, expiry, and the start.

Real app, real processes, real databases (both engines where the flow's transactions
matter).  ``staff`` asks, ``other`` and ``lead2`` approve (group ``leads``), ``admin`` is
in ``leads`` too; ``staff`` and ``other`` may run the commands (group ``ops``), ``lead2``
may not (approving needs no grant).  Shared fixtures here are imported by the race and
browser tests.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from gateway import audit
from gateway.catalogue.switches import holder, set_disabled
from gateway.db.approval_tables import ApprovalRequest
from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from tests.conftest import csrf_token_from, seed_session

PY = sys.executable
SECRET = "s3cret-Lengthy-Value-42"
# Prints whether it received the secret (never the secret itself) and the queue it purged.
PURGE = (
    "import os,sys,hashlib\\n"
    "ok = hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest()[:12]\\n"
    "print('purged', sys.argv[1], 'token', ok)"
)


def catalogue(timeout: int = 20) -> str:
    return textwrap.dedent(
        f"""
        commands:
          - name: purge
            title: Purge a queue
            kind: shell
            argv: ["{PY}", "-c", "{PURGE}", "{{queue}}"]
            env: {{TOKEN: "{{token}}"}}
            params:
              queue: {{type: choice, choices: [orders, mails], required: true}}
              token: {{type: string, secret: true}}
            timeout: {timeout}
            approval: {{approvers: [leads], expires_minutes: 30}}
          - name: purge-two
            title: Purge with two approvers
            kind: shell
            argv: ["echo", "purged two"]
            allowed_networks: ["127.0.0.1/32"]
            approval: {{approvers: [leads], min_approvals: 2}}
          - name: slow-purge
            title: Purge slowly, one at a time
            kind: shell
            argv: ["sleep", "{{seconds}}"]
            params:
              seconds: {{type: number, min: 0, max: 60, default: 30}}
            concurrency: 1
            approval: {{approvers: [leads]}}
          - name: echo
            title: Echo
            kind: shell
            argv: ["echo", "{{args}}"]
            params:
              args: {{type: list}}
          - name: echo-guarded
            title: Echo, approved
            kind: shell
            argv: ["echo", "{{args}}"]
            params:
              args: {{type: list}}
            approval: {{approvers: [leads, nobody-made-this]}}
        """
    )


COMMANDS = ("purge", "purge-two", "slow-purge", "echo", "echo-guarded")


@pytest.fixture
def catalogue_path(tmp_path: Path) -> Path:
    path = tmp_path / "commands.yaml"
    path.write_text(catalogue())
    return path


@pytest.fixture
def approval_app(make_app, catalogue_path):
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue_path, RUN_HEARTBEAT_SECONDS=1)
    with app.app_context():
        for name in ("admin", "staff", "other", "lead2"):
            accounts.create_user(name, f"{name}-password-123", is_admin=(name == "admin"))
        groups.create_group("ops")
        groups.create_group("leads")
        for name in ("staff", "other"):
            groups.add_member("ops", name)
        for name in ("other", "lead2", "admin"):
            groups.add_member("leads", name)
        for command in COMMANDS:
            groups.add_grant("ops", command)
    return app


def token(app, username: str) -> dict[str, str]:
    with app.app_context():
        issued = tokens.create_token(accounts.get_user(username), name="approvals")
    return {"Authorization": f"Bearer {issued.secret}"}


def ask(client, headers, name: str, params: dict | None = None) -> str:
    """Request a run that needs approval: 202, waiting; its id."""
    response = client.post(f"/api/v1/commands/{name}/runs", json={"params": params or {}}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["status"] == "pending_approval"
    return response.get_json()["id"]


def decide(client, headers, run_id: str, action: str, comment: str | None = None):
    body = {} if comment is None else {"comment": comment}
    return client.post(f"/api/v1/runs/{run_id}/{action}", json=body, headers=headers)


def finished(client, headers, run_id: str) -> dict:
    response = client.get(f"/api/v1/runs/{run_id}?wait=20", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def ledger(app, run_id: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if run_id is not None:
            query = query.where(AuditEvent.run_id == run_id)
        rows = list(db.session.scalars(query))
        db.session.remove()
    return rows


def steps(app, run_id: str) -> list[tuple[str, str | None, str | None]]:
    return [(e.event, e.outcome, e.actor_name) for e in ledger(app, run_id)]


def request_row(app, run_id: str) -> ApprovalRequest:
    with app.app_context():
        row = db.session.get(ApprovalRequest, run_id)
        db.session.expunge_all()
        return row


def verified(app) -> bool:
    with app.app_context():
        result = audit.verify(db.session(), audit.Keyring.from_config(app.config))
        db.session.remove()
    return result.ok


def status_of(app, run_id: str) -> str:
    with app.app_context():
        status = db.session.scalar(select(Run.status).where(Run.id == run_id))
        db.session.remove()
    return status


# --- the catalogue -------------------------------------------------------------------------------

BASE = """
commands:
  - name: purge
    title: Purge
    kind: shell
    argv: ["true"]
    approval: {approvers: [leads]}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "    cache_seconds: 30\n", "command 'purge': cache_seconds: not allowed with approval"),
        (BASE + "    params:\n      dump: {type: file}\n", "approval: not allowed with file parameter 'dump'"),
        (
            BASE + 'schedules:\n  - name: nightly\n    command: purge\n    cron: "0 3 * * *"\n',
            "schedule 'nightly' field command: command 'purge' needs approval",
        ),
        (BASE.replace("[leads]", "[]"), "field approval.approvers: List should have at least 1 item"),
        (BASE.replace("[leads]", "[Leads]"), "field approval.approvers.0: String should match pattern"),
        (BASE.replace("[leads]", "[leads, leads]"), "field approval.approvers: 'leads' is listed twice"),
        (BASE.replace("[leads]", "[leads], notify: [Oncall Mail]"), "field approval.notify.0: String should match"),
        (BASE.replace("[leads]", "[leads], min_approvals: 0"), "field approval.min_approvals: Input should be"),
        (BASE.replace("[leads]", "[leads], expires_minutes: 20000"), "field approval.expires_minutes: Input should"),
        (BASE.replace("[leads]", "[leads], quorum: 2"), "field approval.quorum: Extra inputs are not permitted"),
        (
            BASE.replace("[leads]", "[leads], notify: [oncall-mail]"),
            "command 'purge' field approval.notify: unknown notification 'oncall-mail'",
        ),
    ],
)
def test_the_catalogue_refuses_what_an_approval_cannot_keep_naming_the_field(text, expected):
    from gateway.catalogue import CatalogueError, parse_catalogue

    with pytest.raises(CatalogueError) as refused:
        parse_catalogue(text)
    assert expected in str(refused.value)


def test_an_approval_with_its_defaults_and_notify_names_loads():
    from gateway.catalogue import parse_catalogue

    mail = "notifications:\n  - {name: oncall-mail, kind: email, to: [oncall@example.com], on: [failed]}\n"
    text = BASE.replace("[leads]", "[leads], notify: [oncall-mail]") + mail
    approval = parse_catalogue(text).commands["purge"].approval
    assert approval is not None and approval.model_dump() == {
        "approvers": ["leads"], "min_approvals": 1, "expires_minutes": 60, "notify": ["oncall-mail"],
    }  # fmt: skip


# --- the flow -----------------------------------------------------------------------------------


@pytest.mark.both_engines  # the request, the decision and the start: one transaction each
def test_a_request_waits_then_runs_under_the_requesters_name_with_its_secret(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, other = token(app, "staff"), token(app, "other")
    run_id = ask(client, staff, "purge", {"queue": "orders", "token": SECRET})

    waiting = client.get(f"/api/v1/runs/{run_id}", headers=other).get_json()  # the approver sees the request
    assert waiting["status"] == "pending_approval" and waiting["user"] == "staff"
    assert waiting["params"] == {"queue": "orders", "token": "***"} and waiting["output"] == ""
    assert waiting["approval"]["state"] == "pending" and waiting["approval"]["can_decide"] is True
    assert waiting["approval"]["min_approvals"] == 1 and waiting["approval"]["decisions"] == []
    sealed = request_row(app, run_id).sealed_secrets
    assert sealed and SECRET not in sealed
    assert steps(app, run_id) == [("run.approval_requested", "pending_approval", "staff")]  # nothing started

    approved = decide(client, other, run_id, "approve", "checked with the on-call, go")
    assert approved.status_code == 200, approved.get_data(as_text=True)
    assert approved.get_json()["status"] in ("running", "queued", "succeeded")
    done = finished(client, staff, run_id)
    digest = __import__("hashlib").sha256(SECRET.encode()).hexdigest()[:12]
    assert done["status"] == "succeeded" and done["output"] == f"purged orders token {digest}\n"
    assert done["user"] == "staff" and done["params"] == {"queue": "orders", "token": "***"}
    [decision] = done["approval"]["decisions"]
    assert (decision["user"], decision["decision"], decision["comment"]) == (
        "other", "approved", "checked with the on-call, go",
    )  # fmt: skip
    assert done["approval"]["state"] == "approved" and done["approval"]["can_decide"] is False
    assert request_row(app, run_id).sealed_secrets is None  # wiped at the start

    assert steps(app, run_id) == [
        ("run.approval_requested", "pending_approval", "staff"),
        ("run.approved", "approved", "other"),
        ("run.started", "running", "staff"),  # under the requester's name
        ("run.finished", "succeeded", "staff"),
    ]
    started = next(e for e in ledger(app, run_id) if e.event == "run.started")
    assert started.detail["approvers"] == ["other"] and started.detail["command_sha256"]
    everything = json.dumps([[e.params, e.detail, e.user_agent] for e in ledger(app)])
    assert SECRET not in everything and verified(app)


def test_nobody_approves_their_own_request_admins_included_whatever_the_token(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, staff_again, admin, admin_again = (token(app, n) for n in ("staff", "staff", "admin", "admin"))
    mine = ask(client, staff, "purge-two")
    for headers in (staff, staff_again):
        refused = decide(client, headers, mine, "approve")
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    admins = ask(client, admin, "purge-two")  # an admin in the approver group, asking
    for headers in (admin, admin_again):
        for action in ("approve", "deny"):
            assert decide(client, headers, admins, action, "me").status_code == 403
    browser = app.test_client()
    seed_session(app, browser, accounts_id(app, "admin"))
    csrf = csrf_token_from(browser.get(f"/runs/{admins}").get_data(as_text=True))
    assert "approve-button" not in browser.get(f"/runs/{admins}").get_data(as_text=True)
    assert browser.post(f"/runs/{admins}/approve", data={"csrf_token": csrf, "comment": "x"}).status_code == 403
    assert status_of(app, mine) == status_of(app, admins) == "pending_approval"
    refusals = [e for e in ledger(app) if e.event == "run.approval_refused"]
    assert {e.outcome for e in refusals} == {"own_request"} and len(refusals) == 7
    assert {e.actor_name for e in refusals} == {"staff", "admin"}
    # Another staff member who neither asked nor approves does not see the request at all.
    with app.app_context():
        accounts.create_user("bystander", "bystander-password-1")
    bystander = token(app, "bystander")
    assert decide(client, bystander, mine, "approve").status_code == 404
    assert client.get(f"/api/v1/runs/{mine}", headers=bystander).status_code == 404


def accounts_id(app, username: str) -> int:
    with app.app_context():
        return accounts.get_user(username).id


@pytest.mark.both_engines  # distinct approvers, counted inside the decision's transaction
def test_each_approver_counts_once_and_min_approvals_two_needs_two(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, other, lead2 = token(app, "staff"), token(app, "other"), token(app, "lead2")
    run_id = ask(client, staff, "purge-two")
    outside = {"REMOTE_ADDR": "127.0.0.2"}  # let in by ALLOWED_NETWORKS, outside the command's allowed_networks
    fenced = client.post(f"/api/v1/runs/{run_id}/approve", json={}, headers=other, environ_base=outside)
    assert fenced.status_code == 404  # an approver from outside the command's networks is none
    first = decide(client, other, run_id, "approve", "one")
    assert first.status_code == 200 and first.get_json()["status"] == "pending_approval"
    assert first.get_json()["approval"]["approvals"] == 1
    again = decide(client, token(app, "other"), run_id, "approve", "one more time")  # another token, same person
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    assert status_of(app, run_id) == "pending_approval"
    assert decide(client, lead2, run_id, "approve", "two").status_code == 200
    done = finished(client, staff, run_id)
    assert done["status"] == "succeeded" and done["output"] == "purged two\n"
    assert [d["user"] for d in done["approval"]["decisions"]] == ["other", "lead2"]
    started = next(e for e in ledger(app, run_id) if e.event == "run.started")
    assert started.detail["approvers"] == ["other", "lead2"]
    assert [e.event for e in ledger(app, run_id)].count("run.approved") == 2
    assert verified(app)


@pytest.mark.both_engines  # terminal states of a run that never started, each with one run.finished
def test_deny_and_withdraw_end_a_request_with_its_secrets_wiped(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, other, lead2 = token(app, "staff"), token(app, "other"), token(app, "lead2")
    denied = ask(client, staff, "purge", {"queue": "mails", "token": SECRET})
    answer = decide(client, other, denied, "deny", "not during the sale")
    assert answer.status_code == 200
    view = answer.get_json()
    assert view["status"] == "denied" and view["error"] == "Denied by other."
    assert view["approval"]["decisions"][0]["comment"] == "not during the sale"
    assert request_row(app, denied).sealed_secrets is None
    assert decide(client, lead2, denied, "approve").status_code == 409  # over
    assert steps(app, denied) == [
        ("run.approval_requested", "pending_approval", "staff"),
        ("run.denied", "denied", "other"),
        ("run.finished", "denied", "staff"),
        ("run.approval_refused", "decided", "lead2"),
    ]

    withdrawn = ask(client, staff, "purge", {"queue": "orders", "token": SECRET})
    assert decide(client, other, withdrawn, "withdraw").status_code == 403  # only the requester
    answer = decide(client, staff, withdrawn, "withdraw", "wrong queue")
    assert answer.status_code == 200 and answer.get_json()["status"] == "withdrawn"
    assert request_row(app, withdrawn).sealed_secrets is None
    assert [e.event for e in ledger(app, withdrawn) if e.event.startswith("run.") and e.outcome == "withdrawn"] == [
        "run.withdrawn", "run.finished",
    ]  # fmt: skip
    cancel = client.post(f"/api/v1/runs/{withdrawn}/cancel", headers=staff)
    assert cancel.status_code == 409
    for run_id in (denied, withdrawn):
        assert [e.event for e in ledger(app, run_id)].count("run.finished") == 1
        assert "run.started" not in [e.event for e in ledger(app, run_id)]
        assert client.get(f"/api/v1/runs/{run_id}/stream", headers=staff).status_code == 200
    assert verified(app)


@pytest.mark.both_engines  # the database clock, swept by the lease supervisor
def test_expiry_is_recorded_by_the_supervisor_with_nobody_looking(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, other = token(app, "staff"), token(app, "other")
    run_id = ask(client, staff, "purge", {"queue": "orders", "token": SECRET})
    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(
                update(ApprovalRequest).where(ApprovalRequest.run_id == run_id).values(expires_at=text_past(connection))
            )
        db.session.remove()
    deadline = time.monotonic() + 10
    while status_of(app, run_id) == "pending_approval" and time.monotonic() < deadline:
        time.sleep(0.1)  # nobody asks the gateway: its supervisor beats every second
    assert status_of(app, run_id) == "expired"
    row = request_row(app, run_id)
    assert row.state == "expired" and row.sealed_secrets is None
    assert [s[:2] for s in steps(app, run_id)] == [
        ("run.approval_requested", "pending_approval"),
        ("run.approval_expired", "expired"),
        ("run.finished", "expired"),
    ]
    late = decide(client, other, run_id, "approve")
    assert late.status_code == 409
    assert verified(app)


def text_past(connection):
    from datetime import timedelta

    from gateway.db import dialect

    return dialect.database_now(connection) - timedelta(seconds=1)


@pytest.mark.both_engines  # admission at the last approval, under the command's lock
def test_admission_refusing_at_the_last_approval_ends_the_run_failed_naming_it(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, other = token(app, "staff"), token(app, "other")
    first = ask(client, staff, "slow-purge", {"seconds": 30})
    second = ask(client, staff, "slow-purge", {"seconds": 1})
    assert decide(client, other, first, "approve").get_json()["status"] in ("running", "queued")
    answer = decide(client, other, second, "approve", "go")
    assert answer.status_code == 200
    failed = answer.get_json()
    assert failed["status"] == "failed" and "already running 1 time(s)" in failed["error"]
    assert failed["error"].startswith("Approved, but not started:")
    assert steps(app, second)[-2:] == [("run.approved", "approved", "other"), ("run.finished", "failed", "staff")]
    finish = ledger(app, second)[-1]
    assert finish.detail["refusal"] == "concurrency_full" and finish.detail["approvers"] == ["other"]
    assert client.post(f"/api/v1/runs/{first}/cancel", headers=staff).status_code == 202
    assert finished(client, staff, first)["status"] == "cancelled"
    assert verified(app)


def test_what_changes_while_a_request_waits_is_checked_at_the_last_approval(approval_app, catalogue_path):
    app, client = approval_app, approval_app.test_client()
    staff, other, lead2 = token(app, "staff"), token(app, "other"), token(app, "lead2")
    params = {"queue": "orders", "token": SECRET}
    changed = ask(client, staff, "purge", params)
    catalogue_path.write_text(catalogue(timeout=25))  # reviewed again: another definition
    holder(app).reload()
    failed = decide(client, other, changed, "approve").get_json()
    assert failed["status"] == "failed" and "definition changed" in failed["error"]
    disabled, ungranted, kept, inactive = (ask(client, staff, "purge", params) for _ in range(4))

    with app.app_context():
        set_disabled("purge", True, actor={"id": None, "name": "cli:test"}, reason="incident")
    failed = decide(client, other, disabled, "approve").get_json()
    assert failed["status"] == "failed" and "disabled by an administrator" in failed["error"]
    with app.app_context():
        set_disabled("purge", False, actor={"id": None, "name": "cli:test"})
    assert request_row(app, disabled).sealed_secrets is None

    with app.app_context():
        groups.remove_member("ops", "staff")  # the requester may no longer run it
    failed = decide(client, other, ungranted, "approve").get_json()
    assert failed["status"] == "failed" and "requester may no longer run" in failed["error"]
    with app.app_context():
        groups.add_member("ops", "staff")
        groups.remove_member("leads", "lead2")  # an approver who is no longer one
    refused = decide(client, lead2, kept, "approve")
    assert refused.status_code == 404 and status_of(app, kept) == "pending_approval"  # the request is not theirs
    assert client.get("/api/v1/approvals", headers=lead2).get_json()["items"] == []

    with app.app_context():  # the requester's account is disabled while the request waits
        accounts.set_active(accounts.get_user("staff"), False, actor={"id": None, "name": "cli:test"})
    failed = decide(client, other, inactive, "approve").get_json()
    assert failed["status"] == "failed" and "requester's account is disabled" in failed["error"]
    for run_id in (changed, disabled, ungranted, inactive):
        events = [e.event for e in ledger(app, run_id)]
        assert events.count("run.finished") == 1 and "run.started" not in events
    assert verified(app)


def test_a_second_user_asking_the_same_gets_a_request_of_their_own_never_a_cached_result(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, other, lead2 = token(app, "staff"), token(app, "other"), token(app, "lead2")
    first = ask(client, staff, "echo-guarded", {"args": ["report"]})
    assert decide(client, other, first, "approve").status_code == 200
    assert finished(client, staff, first)["output"] == "report\n"
    second = ask(client, other, "echo-guarded", {"args": ["report"]})  # the same params, another user
    assert second != first
    view = client.get(f"/api/v1/runs/{second}", headers=other).get_json()
    assert view["status"] == "pending_approval" and view["output"] == "" and view["cached"] is False
    assert client.get(f"/api/v1/runs/{first}", headers=token(app, "lead2")).get_json()["output"] == "report\n"
    assert not [e for e in ledger(app) if e.event == "run.cache_hit"]
    assert decide(client, lead2, second, "approve").status_code == 200
    assert finished(client, other, second)["output"] == "report\n"


# --- the lists, the pages, the surfaces -----------------------------------------------------------


def test_the_approvals_lists_say_what_waits_for_me_and_what_i_asked_for(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, other, admin = token(app, "staff"), token(app, "other"), token(app, "admin")
    run_id = ask(client, staff, "purge", {"queue": "orders", "token": SECRET})
    waiting = client.get("/api/v1/approvals", headers=other).get_json()
    assert [item["id"] for item in waiting["items"]] == [run_id] and waiting["next_cursor"] is None
    assert waiting["items"][0]["params"]["token"] == "***" and "output" not in waiting["items"][0]
    assert client.get("/api/v1/approvals", headers=staff).get_json()["items"] == []  # not one's own
    mine = client.get("/api/v1/approvals?scope=requested", headers=staff).get_json()["items"]
    assert [item["id"] for item in mine] == [run_id] and mine[0]["approval"]["can_withdraw"] is True
    assert [item["id"] for item in client.get("/api/v1/approvals", headers=admin).get_json()["items"]] == [run_id]
    bad = client.get("/api/v1/approvals?scope=everything", headers=staff)
    assert bad.status_code == 400 and "scope" in bad.get_json()["error"]["details"]
    decide(client, other, run_id, "approve")
    assert client.get("/api/v1/approvals", headers=admin).get_json()["items"] == []  # decided
    everything = json.dumps(
        [client.get(u, headers=other).get_json() for u in (f"/api/v1/runs/{run_id}", "/api/v1/runs")]
    )
    assert SECRET not in everything


def test_the_pages_show_the_request_and_decide_it_in_the_browser(approval_app):
    app = approval_app
    requester, approver, bystander_admin = app.test_client(), app.test_client(), app.test_client()
    for client, name in ((requester, "staff"), (approver, "other"), (bystander_admin, "lead2")):
        seed_session(app, client, accounts_id(app, name))
    form = requester.get("/commands/purge").get_data(as_text=True)
    assert "needs approval" in form and "Request approval" in form
    csrf = csrf_token_from(form)
    sent = requester.post("/commands/purge", data={"csrf_token": csrf, "queue": "orders", "token": SECRET})
    assert sent.status_code == 303
    run_id = sent.headers["Location"].rsplit("/", 1)[-1]
    own = requester.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "Awaiting approval" in own and "approve-button" not in own and "Withdraw request" in own
    assert 'href="/approvals"' in own

    listed = approver.get("/approvals").get_data(as_text=True)
    assert f"/runs/{run_id}" in listed and "staff" in listed
    page = approver.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "approve-button" in page and "deny-button" in page and SECRET not in page
    assert 'id="confirm-params"' in page and "orders" in page and "*** (secret, not shown)" in page
    csrf = csrf_token_from(page)
    answer = approver.post(f"/runs/{run_id}/approve", data={"csrf_token": csrf, "comment": "ok <b>go</b>"})
    assert answer.status_code == 303 and answer.headers["Location"] == f"/runs/{run_id}"
    assert finished(app.test_client(), token(app, "staff"), run_id)["status"] == "succeeded"
    shown = requester.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "other</strong> approved" in shown and "ok &lt;b&gt;go&lt;/b&gt;" in shown
    assert "purged orders" in shown and SECRET not in shown
    assert f"/runs/{run_id}" in requester.get("/approvals").get_data(as_text=True)  # my requests
    assert f"/runs/{run_id}" not in bystander_admin.get("/approvals").get_data(as_text=True)  # decided


def test_hostile_comments_and_bodies_are_refused_by_field_on_record_and_decide_nothing(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff, other = token(app, "staff"), token(app, "other")
    run_id = ask(client, staff, "purge-two")
    url = f"/api/v1/runs/{run_id}/approve"
    for comment in ("a\x00b", "x" * 1001, "\x1b[31mred", 42, ["list"], "\ud800"):
        answer = client.post(url, json={"comment": comment}, headers=other)
        assert answer.status_code == 400 and "comment" in answer.get_json()["error"]["details"], comment
    assert client.post(url, json={"comment": "ok", "force": True}, headers=other).status_code == 400
    assert client.post(url, data="comment=ok", headers=other).status_code == 415
    assert client.post(url, data=b"{", headers={**other, "Content-Type": "application/json"}).status_code == 400
    assert status_of(app, run_id) == "pending_approval"
    refusals = [e for e in ledger(app, run_id) if e.event == "run.approval_refused"]
    assert len(refusals) == 9 and {e.outcome for e in refusals} == {"invalid_comment", "invalid_request"}
    assert all(len(json.dumps(e.detail)) < 1000 for e in refusals)
    multiline = client.post(url, json={"comment": "line one\nline two\tok"}, headers=other)
    assert multiline.status_code == 200 and multiline.get_json()["approval"]["decisions"][0]["comment"].count("\n") == 1


def test_shell2http_refuses_a_command_that_needs_approval_with_400_on_record(approval_app):
    app, client = approval_app, approval_app.test_client()
    staff = token(app, "staff")
    answer = client.post("/shell2http/echo-guarded", json={"args": ["x"]}, headers=staff)
    assert answer.status_code == 400 and "needs approval" in answer.get_json()["error"]
    assert client.get("/shell2http/echo-guarded?key=abc", headers=staff).status_code == 400
    assert client.post("/shell2http/echo", json={"args": ["x"]}, headers=staff).status_code == 202
    [refused] = [e for e in ledger(app) if e.event == "run.rejected"]
    assert refused.command == "echo-guarded" and "needs approval" in refused.detail["message"]
    listed = {c["name"]: c for c in client.get("/api/v1/commands", headers=staff).get_json()["items"]}
    assert listed["echo-guarded"]["shell2http"] is False and listed["echo"]["shell2http"] is True
    assert listed["purge-two"]["approval"] == {"approvers": ["leads"], "min_approvals": 2, "expires_minutes": 60}
    assert listed["echo"]["approval"] is None


def test_unknown_approver_groups_warn_at_readiness_and_the_rate_limit_is_spent_at_the_request(make_app, tmp_path):
    path = tmp_path / "commands.yaml"
    path.write_text(
        catalogue().replace(
            "    approval: {approvers: [leads], min_approvals: 2}",
            "    rate_limit: 2/minute\n    approval: {approvers: [leads], min_approvals: 2}",
        )
    )
    app = make_app(GATEWAY_COMMANDS_FILE=path)
    with app.app_context():
        accounts.create_user("staff", "staff-password-123")
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "purge-two")
    client = app.test_client()
    ready = client.get("/readyz").get_json()
    assert ready["checks"]["approvals:groups"] == [{"status": "warn"}] and ready["status"] == "warn"
    staff = token(app, "staff")
    ask(client, staff, "purge-two")
    ask(client, staff, "purge-two")
    limited = client.post("/api/v1/commands/purge-two/runs", json={"params": {}}, headers=staff)
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    with app.app_context():
        for group in ("leads", "nobody-made-this"):
            groups.create_group(group)
    assert client.get("/readyz").get_json()["checks"]["approvals:groups"] == [{"status": "pass"}]


# --- across replicas ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_approvers_racing_on_two_replicas_start_the_run_exactly_once(approval_app, make_app, catalogue_path):
    """Two gateway apps (replicas: engines, pools and executors of their own) on one PostgreSQL database."""
    import threading

    replicas = [approval_app, make_app(GATEWAY_COMMANDS_FILE=catalogue_path, RUN_HEARTBEAT_SECONDS=1)]
    staff = token(approval_app, "staff")
    approvers = [token(approval_app, name) for name in ("other", "lead2", "admin")]
    started_ids = []
    for round_number in range(3):
        run_id = ask(replicas[round_number % 2].test_client(), staff, "purge-two")
        barrier = threading.Barrier(len(approvers))
        answers: list[int] = []

        def approve(
            index: int, run_id: str = run_id, barrier: threading.Barrier = barrier, answers: list[int] = answers
        ) -> None:
            client = replicas[index % 2].test_client()
            barrier.wait()
            answers.append(decide(client, approvers[index], run_id, "approve", f"me too {index}").status_code)

        threads = [threading.Thread(target=approve, args=(index,)) for index in range(len(approvers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(answers) == [200, 200, 409], answers  # two counted (the second starts it), one too late
        assert finished(replicas[0].test_client(), staff, run_id)["output"] == "purged two\n"
        events = [e.event for e in ledger(approval_app, run_id)]
        assert events.count("run.started") == 1 and events.count("run.finished") == 1
        assert events.count("run.approved") == 2 and events.count("run.approval_refused") == 1
        started_ids.append(run_id)
    assert len(set(started_ids)) == 3 and verified(approval_app)
