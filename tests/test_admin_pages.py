"""The admin pages over HTTP: every action, its effect, and the audit event it leaves.

Each test drives the real app through the Flask test client the way a
browser does (CSRF token from the page, POST, follow the redirect) and then
checks both what the affected user experiences and what the ledger recorded.
"""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import audit, runs
from gateway.catalogue import switches
from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from tests.conftest import csrf_token_from, login_response

CATALOGUE = textwrap.dedent(
    """
    commands:
      - name: disk-usage
        title: Disk usage
        category: System
        kind: shell
        argv: ["df", "-h", "{mount}"]
        params:
          mount: {type: choice, choices: ["/", "/tmp"], default: "/"}
        timeout: 10
      - name: long-nap
        title: Sleeps
        category: System
        kind: shell
        argv: ["sleep", "30"]
        timeout: 60
      - name: uptime
        title: Uptime
        category: Reports
        kind: shell
        argv: ["uptime"]
    """
)


@pytest.fixture
def app(make_app, tmp_path: Path):
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=path)


@pytest.fixture
def admin(login):
    return login("admin")


def post(client, url: str, data: dict | None = None, *, page: str = "/admin/users"):
    """Submit a form the way the browser does: the CSRF token comes from an admin page."""
    token = csrf_token_from(client.get(page).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **(data or {})})


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)))


def user_id(app, name: str) -> int:
    with app.app_context():
        return accounts.get_user(name).id


def chain_ok(app) -> bool:
    with app.app_context():
        return audit.verify(db.session, audit.Keyring.from_config(app.config)).ok


def shown_password(html: str) -> str:
    match = re.search(r'id="new-password" class="token" value="([^"]+)"', html)
    assert match, "no one-time password on the page"
    return match.group(1)


# --- users --------------------------------------------------------------------------------------


def test_create_user_with_a_generated_password_shown_once(app, admin, users):
    response = post(admin, "/admin/users", {"username": "newbie", "password_mode": "generate"})
    # Post/redirect/get: the answer to the POST holds no secret, so a refresh cannot resubmit the form.
    assert response.status_code == 303 and response.headers["Location"].endswith("/admin/users")
    assert "newbie" not in response.get_data(as_text=True)
    password = shown_password(admin.get("/admin/users").get_data(as_text=True))
    # Shown once: the next visit does not show it again.
    assert password not in admin.get("/admin/users").get_data(as_text=True)
    assert login_response(app.test_client(), "newbie", password).status_code == 302
    created = events(app, "admin.user_created")[-1]
    assert created.actor_name == "admin" and created.actor_id == users["admin"].id
    assert created.source_ip == "127.0.0.1"
    assert created.detail["after"] == {"username": "newbie", "is_admin": False, "active": True}
    assert password not in str(created.detail)
    assert chain_ok(app)


def test_create_admin_with_a_set_password(app, admin, users):
    data = {"username": "boss", "is_admin": "on", "password_mode": "set"}
    mismatch = post(admin, "/admin/users", {**data, "password": "a-long-password-1", "password_confirm": "other"})
    assert mismatch.status_code == 400 and "not the same" in mismatch.get_data(as_text=True)
    response = post(
        admin, "/admin/users", {**data, "password": "a-long-password-1", "password_confirm": "a-long-password-1"}
    )
    assert response.status_code == 303
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "boss is created." in page and 'id="new-password"' not in page
    with app.app_context():
        assert accounts.get_user("boss").is_admin
    assert events(app, "admin.user_created")[-1].detail["after"]["is_admin"] is True


def test_create_user_refuses_a_duplicate_and_a_bad_name(app, admin, users):
    duplicate = post(admin, "/admin/users", {"username": "staff", "password_mode": "generate"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.get_data(as_text=True)
    bad = post(admin, "/admin/users", {"username": "<b>x</b>", "password_mode": "generate"})
    assert bad.status_code == 400 and "<b>x</b>" not in bad.get_data(as_text=True)
    assert len(events(app, "admin.user_created")) == 3  # only the fixture's users


def test_disable_ends_sessions_and_tokens_and_enable_restores_neither(app, admin, users):
    staff_client = app.test_client()
    assert login_response(staff_client, "staff", users["staff"].password).status_code == 302
    with app.app_context():
        issued = tokens.create_token(accounts.get_user("staff"), name="ci")
    bearer = {"Authorization": f"Bearer {issued.secret}"}
    assert staff_client.get("/").status_code == 200
    assert app.test_client().get("/api/v1/commands", headers=bearer).status_code == 200

    # The browser form asks first: the first POST only shows the question and changes nothing.
    asked = post(admin, f"/admin/users/{users['staff'].id}/disable")
    assert asked.status_code == 200 and "Really disable staff?" in asked.get_data(as_text=True)
    assert staff_client.get("/").status_code == 200
    response = post(admin, f"/admin/users/{users['staff'].id}/disable", {"confirm": "yes"})
    assert response.status_code == 303
    assert staff_client.get("/").status_code == 302  # the session is gone: back to sign-in
    assert app.test_client().get("/api/v1/commands", headers=bearer).status_code == 401
    assert login_response(app.test_client(), "staff", users["staff"].password).status_code != 302
    event = events(app, "admin.user_updated")[-1]
    assert event.detail["before"]["active"] is True and event.detail["after"]["active"] is False
    assert event.detail["sessions_ended"] == 1 and event.detail["tokens_revoked"] == 1
    assert event.actor_name == "admin"

    post(admin, f"/admin/users/{users['staff'].id}/enable")
    assert login_response(app.test_client(), "staff", users["staff"].password).status_code == 302
    # The token was revoked, not merely suspended: enabling the user again does not bring it back.
    assert app.test_client().get("/api/v1/commands", headers=bearer).status_code == 401
    assert staff_client.get("/").status_code == 302
    assert events(app, "admin.user_updated")[-1].detail["after"]["active"] is True


@pytest.mark.both_engines  # throttles: the sign-in throttle per engine
def test_unlock_lets_a_locked_user_sign_in_again(app, admin, users):
    locked_out = app.test_client()
    for _ in range(app.config["LOGIN_MAX_ATTEMPTS"]):
        login_response(locked_out, "staff", "wrong-password-123")
    assert login_response(locked_out, "staff", users["staff"].password).status_code != 302
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "locked until" in page
    response = post(admin, f"/admin/users/{users['staff'].id}/unlock")
    assert response.status_code == 303
    assert login_response(app.test_client(), "staff", users["staff"].password).status_code == 302
    event = events(app, "admin.user_updated")[-1]
    assert event.detail == {"user": "staff", "changed": ["unlocked"], "had_lock": True}


def test_reset_password_shows_a_new_one_once_and_the_old_one_stops_working(app, admin, users):
    response = post(admin, f"/admin/users/{users['staff'].id}/reset-password")
    assert response.status_code == 303
    password = shown_password(admin.get("/admin/users").get_data(as_text=True))
    assert password not in admin.get("/admin/users").get_data(as_text=True)
    assert login_response(app.test_client(), "staff", users["staff"].password).status_code != 302
    assert login_response(app.test_client(), "staff", password).status_code == 302
    event = events(app, "admin.user_updated")[-1]
    assert event.detail["changed"] == ["password"] and password not in str(event.detail)


def test_an_admin_cannot_reset_their_own_password_here(app, admin, users):
    """It would end the session the new password was about to be shown in: locked out, password lost."""
    page = admin.get("/admin/users").get_data(as_text=True)
    assert f"/admin/users/{users['admin'].id}/reset-password" not in page
    assert f"/admin/users/{users['staff'].id}/reset-password" in page
    response = post(admin, f"/admin/users/{users['admin'].id}/reset-password")
    assert response.status_code == 400 and "use your account page" in response.get_data(as_text=True)
    assert admin.get("/admin/users").status_code == 200  # still signed in
    assert login_response(app.test_client(), "admin", users["admin"].password).status_code == 302
    assert not [e for e in events(app, "admin.user_updated") if "password" in e.detail.get("changed", [])]


def test_make_and_revoke_admin(app, admin, users):
    staff = app.test_client()
    login_response(staff, "staff", users["staff"].password)
    assert staff.get("/admin/users").status_code == 404
    post(admin, f"/admin/users/{users['staff'].id}/make-admin")
    assert staff.get("/admin/users").status_code == 200
    event = events(app, "admin.user_updated")[-1]
    assert event.detail["before"]["is_admin"] is False and event.detail["after"]["is_admin"] is True
    post(admin, f"/admin/users/{users['staff'].id}/revoke-admin")
    assert staff.get("/admin/users").status_code == 404
    assert events(app, "admin.user_updated")[-1].detail["after"]["is_admin"] is False


def test_the_last_admin_cannot_demote_or_disable_themself(app, admin, users):
    before = len(events(app, "admin.user_updated"))
    demote = post(admin, f"/admin/users/{users['admin'].id}/revoke-admin")
    assert demote.status_code == 303
    assert "cannot revoke your own admin" in admin.get("/admin/users").get_data(as_text=True)
    disable = post(admin, f"/admin/users/{users['admin'].id}/disable", {"confirm": "yes"})
    assert disable.status_code == 303
    assert "cannot disable your own account" in admin.get("/admin/users").get_data(as_text=True)
    with app.app_context():
        me = accounts.get_user("admin")
        assert me.is_admin and me.active
    assert len(events(app, "admin.user_updated")) == before
    assert admin.get("/admin/users").status_code == 200  # still signed in, still admin


@pytest.mark.both_engines  # the admin rows are locked (FOR UPDATE)
def test_the_last_active_admin_rule_holds_in_the_service_the_ui_uses(app, admin, users):
    # From the UI the acting admin is always an active admin, so "last admin" meets "self" first;
    # the CLI (no user id) is where the last-admin rule itself answers.
    with app.app_context(), pytest.raises(accounts.AccountError, match="last active admin"):
        accounts.set_admin(accounts.get_user("admin"), False, actor={"id": None, "name": "cli:root"})


@pytest.mark.both_engines  # the admin rows are locked (FOR UPDATE)
def test_one_admin_can_demote_another(app, admin, users):
    post(admin, f"/admin/users/{users['staff'].id}/make-admin")
    post(admin, f"/admin/users/{users['staff'].id}/revoke-admin")
    with app.app_context():
        assert not accounts.get_user("staff").is_admin


def test_unknown_user_is_404(app, admin, users):
    assert post(admin, "/admin/users/99999/disable").status_code == 404


# --- groups and permissions ---------------------------------------------------------------------


def test_groups_create_members_and_delete(app, admin, users):
    assert post(admin, "/admin/groups", {"name": "ops", "description": "Operators"}).status_code == 303
    assert events(app, "admin.group_created")[-1].detail == {"group": "ops"}
    post(admin, "/admin/groups/ops/members", {"username": "staff"})
    added = events(app, "admin.group_member_added")[-1]
    assert added.detail == {"group": "ops", "user": "staff"} and added.actor_name == "admin"
    page = admin.get("/admin/groups").get_data(as_text=True)
    assert "Operators" in page and "Remove staff from ops" in page
    post(admin, "/admin/groups/ops/members/remove", {"username": "staff", "confirm": "yes"})
    assert events(app, "admin.group_member_removed")[-1].detail == {"group": "ops", "user": "staff"}
    post(admin, "/admin/groups/ops/members", {"username": "other"})
    with app.app_context():
        groups.add_grant("ops", "uptime")
    assert post(admin, "/admin/groups/ops/delete", {"confirm": "yes"}).status_code == 303
    with app.app_context():
        assert groups.find_group("ops") is None and groups.list_grants() == []
    deleted = events(app, "admin.group_deleted")[-1]
    assert deleted.detail["before"] == {
        "group": "ops",
        "description": "Operators",
        "members": ["other"],
        "grants": ["uptime"],
    }
    assert chain_ok(app)


def test_group_errors_are_reported_not_crashed(app, admin, users):
    bad = post(admin, "/admin/groups", {"name": "Bad Name!"})  # answered in place, next to the field, name kept
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and 'id="group-name-error">Use 1-100 of' in html and 'value="Bad Name!"' in html
    post(admin, "/admin/groups/nope/members", {"username": "staff"})
    assert "No group" in admin.get("/admin/groups").get_data(as_text=True)
    post(admin, "/admin/groups/nope/delete")
    assert events(app, "admin.group_deleted") == []


def test_matrix_click_grants_then_revokes_and_staff_sees_the_effect(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
    staff = app.test_client()
    login_response(staff, "staff", users["staff"].password)
    assert staff.get("/commands/uptime").status_code == 404

    page = admin.get("/admin/permissions").get_data(as_text=True)
    matrix = page[page.index('<main id="main">') :]  # the header's Theme select has a "System" of its own
    assert "Grant uptime to ops" in matrix and matrix.index(">Reports<") < matrix.index(">System<")
    post(admin, "/admin/permissions", {"group": "ops", "command": "uptime", "action": "grant"})
    assert staff.get("/commands/uptime").status_code == 200
    grant = events(app, "admin.grant_added")[-1]
    assert grant.command == "uptime" and grant.detail == {"group": "ops"} and grant.actor_name == "admin"
    assert "Revoke uptime from ops" in admin.get("/admin/permissions").get_data(as_text=True)

    post(admin, "/admin/permissions", {"group": "ops", "command": "uptime", "action": "revoke", "confirm": "yes"})
    assert staff.get("/commands/uptime").status_code == 404
    assert events(app, "admin.grant_removed")[-1].command == "uptime"


def test_matrix_refuses_to_grant_a_command_not_in_the_catalogue(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
    post(admin, "/admin/permissions", {"group": "ops", "command": "rm-rf", "action": "grant"})
    assert "No command" in admin.get("/admin/permissions").get_data(as_text=True)
    assert events(app, "admin.grant_added") == []


def test_stale_grants_are_shown_and_can_be_revoked(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "vanished-report")  # a command since removed from the catalogue
    permissions = admin.get("/admin/permissions")
    assert permissions.status_code == 200 and "Revoke stale vanished-report from ops" in permissions.get_data(
        as_text=True
    )
    listing = admin.get("/admin/commands").get_data(as_text=True)
    assert "stale" in listing and "vanished-report" in listing
    detail = admin.get("/admin/commands/vanished-report")
    assert detail.status_code == 200 and "not in the loaded catalogue" in detail.get_data(as_text=True)
    assert "staff" in detail.get_data(as_text=True)
    post(
        admin,
        "/admin/permissions",
        {"group": "ops", "command": "vanished-report", "action": "revoke", "confirm": "yes"},
    )
    with app.app_context():
        assert groups.list_grants() == []
    assert admin.get("/admin/commands/vanished-report").status_code == 404


# --- commands -----------------------------------------------------------------------------------


def test_kill_switch_disables_and_enables_with_audit(app, admin, users):
    response = post(admin, "/admin/commands/uptime/disable", {"reason": "vendor bug", "confirm": "yes"})
    assert response.status_code == 303
    with app.app_context():
        assert switches.is_disabled("uptime")
        admin_user = accounts.get_user("admin")
        with pytest.raises(runs.RunRejected) as refused:
            runs.start("uptime", {}, runs.Caller(user=admin_user, source_ip="127.0.0.1"))
        assert refused.value.status in (403, 409, 503)
    event = events(app, "admin.command_disabled")[-1]
    assert event.command == "uptime" and event.detail == {"reason": "vendor bug"} and event.actor_name == "admin"
    assert "vendor bug" in admin.get("/admin/commands").get_data(as_text=True)
    post(admin, "/admin/commands/uptime/enable", {"back": "detail"})
    with app.app_context():
        assert not switches.is_disabled("uptime")
    assert events(app, "admin.command_enabled")[-1].command == "uptime"
    assert post(admin, "/admin/commands/nope/disable").status_code == 404


def test_command_detail_shows_the_definition_and_who_can_run_it(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "disk-usage")
        digest = switches.current_catalogue().get("disk-usage").definition_sha256()
    page = admin.get("/admin/commands/disk-usage").get_data(as_text=True)
    assert digest in page and '"df"' in page and '"-h"' in page
    assert "choices" in page and "Timeout" in page
    who = page[page.index("Who can run this") :]
    assert "staff" in who and "ops" in who and "admin" in who and "other" not in who
    assert admin.get("/admin/commands/no-such-command").status_code == 404


# --- tokens -------------------------------------------------------------------------------------


def test_admin_sees_all_tokens_and_revokes_any(app, admin, users):
    with app.app_context():
        issued = tokens.create_token(accounts.get_user("staff"), name="deploy-bot")
        token_id, prefix = issued.token.id, issued.token.prefix
    page = admin.get("/admin/tokens").get_data(as_text=True)
    assert "deploy-bot" in page and prefix in page and "staff" in page and "never" in page
    assert issued.secret not in page
    assert post(admin, f"/admin/tokens/{token_id}/revoke", {"confirm": "yes"}).status_code == 303
    with app.app_context():
        assert tokens.authenticate(issued.secret) is None
    event = events(app, "token.revoked")[-1]
    assert event.actor_name == "admin" and event.detail == {"token_id": token_id, "prefix": prefix, "reason": "manual"}
    assert "revoked" in admin.get("/admin/tokens").get_data(as_text=True)
    assert post(admin, "/admin/tokens/99999/revoke").status_code == 404


# --- all runs -----------------------------------------------------------------------------------


def wait_for(app, run_id: str, timeout: float = 15.0) -> Run:
    deadline = time.monotonic() + timeout
    with app.app_context():
        while True:
            db.session.rollback()
            run = db.session.get(Run, run_id)
            if run.status not in runs.LIVE or time.monotonic() > deadline:
                return run
            time.sleep(0.05)


@pytest.mark.both_engines  # runs: filters are SQL; cancel
def test_all_runs_lists_everyones_runs_filters_and_cancels(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "long-nap")
        staff_user = accounts.get_user("staff")
        started = runs.start("long-nap", {}, runs.Caller(user=staff_user, source_ip="127.0.0.1"))
        run_id = started.run.id
    page = admin.get("/admin/runs").get_data(as_text=True)
    assert run_id in page and "Cancel run" in page
    assert run_id in admin.get("/admin/runs?user=staff&command=long-nap&status=" + started.run.status).get_data(
        as_text=True
    )
    assert run_id not in admin.get("/admin/runs?user=other").get_data(as_text=True)
    assert run_id not in admin.get("/admin/runs?command=uptime").get_data(as_text=True)
    for query, named in (("cursor=garbage", "The cursor parameter"), ("status=bogus", "The status parameter")):
        refused = admin.get(f"/admin/runs?{query}")
        assert refused.status_code == 400 and named in refused.get_data(as_text=True)

    assert post(admin, f"/admin/runs/{run_id}/cancel").status_code == 303
    assert wait_for(app, run_id).status == "cancelled"
    cancel = events(app, "run.cancel_requested")[-1]
    assert cancel.run_id == run_id and cancel.actor_name == "admin"
    assert post(admin, f"/admin/runs/{run_id}/cancel").status_code == 303  # already ended: a message, not a crash
    assert post(admin, "/admin/runs/not-a-run/cancel").status_code == 404


def test_a_commands_rules_show_whole_bounds_as_the_catalogue_writes_them():
    from gateway.admin.commands import param_rules
    from gateway.catalogue.loader import load_catalogue

    rules = param_rules(load_catalogue(Path(__file__).parent.parent / "commands.yaml").commands["log-tail"])
    assert "min=1;" in rules["lines"] and "max=1000;" in rules["lines"] and ".0" not in rules["lines"]
