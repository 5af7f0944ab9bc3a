"""Account recovery takes back every credential, on both engines (DESIGN.md, "Revocation").

Each way a password is reset, changed or set through an invite, each way a
user's second factors are reset, and each way a user is disabled, must end
all of that user's server-side sessions *and* API tokens at once, each token
audited ``token.revoked`` with the reason. A
bearer token minted before the change (by a thief, or by the user before
their laptop was stolen) must not outlive it. Logging out is not recovery:
it ends only that browser session (``tests/test_sessions.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway.cli.users import users_group
from gateway.db.models import ApiToken, AuditEvent
from gateway.identity import accounts, tokens
from gateway.platform.extensions import db
from tests.conftest import PASSWORDS, csrf_token_from, seed_session
from tests.conftest import TestUser as Person  # aliased: pytest would try to collect a "Test..." class

pytestmark = pytest.mark.both_engines  # the attack suite: revocation takes effect on the next request, per engine

NEW_PASSWORD = "a-brand-new-password-42"


@dataclass
class Scene:
    """The staff user's credentials before the change, and who acts."""

    app: Flask
    users: dict[str, Person]
    admin: FlaskClient
    staff_sessions: list[FlaskClient]  # two browsers; the first is the one the user acts from
    invite: str | None = None  # the open invite link's token, for the invite path


def signed_in_client(app: Flask, user: Person) -> FlaskClient:
    client = app.test_client()
    seed_session(app, client, user.id)
    return client


def signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


def api_status(app: Flask, secret: str) -> int:
    return app.test_client().get("/api/v1/commands", headers={"Authorization": f"Bearer {secret}"}).status_code


def post_form(client: FlaskClient, page: str, url: str, data: dict[str, str] | None = None):
    token = csrf_token_from(client.get(page).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **(data or {})})


def run_cli(app: Flask, *args: str, stdin: str = "") -> None:
    result = app.test_cli_runner().invoke(users_group, list(args), input=stdin)
    assert result.exit_code == 0, result.output


# --- the recovery paths ----------------------------------------------------------------------


def admin_resets_the_password(scene: Scene) -> None:
    url = f"/admin/users/{scene.users['staff'].id}/reset-password"
    assert post_form(scene.admin, "/admin/users", url, {"confirm": "yes"}).status_code == 303


def admin_resets_by_invite_link(scene: Scene) -> None:
    url = f"/admin/users/{scene.users['staff'].id}/invite"
    assert post_form(scene.admin, "/admin/users", url, {"confirm": "yes"}).status_code == 303


def operator_sets_the_password(scene: Scene) -> None:
    run_cli(scene.app, "set-password", "staff", "--password-stdin", stdin=NEW_PASSWORD + "\n")


def user_changes_their_password(scene: Scene) -> None:
    data = {"current_password": PASSWORDS["staff"], "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    response = post_form(scene.staff_sessions[0], "/account", "/account/password", data)
    assert response.status_code == 303


def invite_is_used(scene: Scene) -> None:
    assert scene.invite is not None
    client = scene.app.test_client()
    data = {"code": scene.invite, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    assert post_form(client, "/invite", "/invite", data).status_code == 303


def admin_disables_the_user(scene: Scene) -> None:
    url = f"/admin/users/{scene.users['staff'].id}/disable"
    assert post_form(scene.admin, "/admin/users", url, {"confirm": "yes"}).status_code == 303


def operator_disables_the_user(scene: Scene) -> None:
    run_cli(scene.app, "disable", "staff")


def open_an_invite(scene: Scene) -> None:
    """Before the credentials exist: the user was reset by invite and has not used the link yet."""
    with scene.app.app_context():
        issued = accounts.reset_by_invite(accounts.get_user("staff"), actor={"id": None, "name": "cli:test"})
    scene.invite = issued.token


def enrol_a_second_factor(scene: Scene) -> None:
    """Before the credentials exist: the user set up an authenticator app (they lost it, hence the reset)."""
    import pyotp

    from gateway.identity.mfa import factors, totp

    with scene.app.app_context():
        staff = accounts.get_user("staff")
        assert factors.confirm_totp(staff, pyotp.TOTP(totp.begin(staff).secret).now()).ok


def admin_resets_the_second_factors(scene: Scene) -> None:
    url = f"/admin/users/{scene.users['staff'].id}/reset-mfa"
    assert post_form(scene.admin, "/admin/users", url, {"confirm": "yes"}).status_code == 303


def operator_resets_the_second_factors(scene: Scene) -> None:
    run_cli(scene.app, "reset-mfa", "staff")


@dataclass(frozen=True)
class RecoveryPath:
    act: Callable[[Scene], None]
    reason: str
    actor: str  # who the token.revoked rows name
    prepare: Callable[[Scene], None] | None = None


PATHS = {
    "admin-reset": RecoveryPath(admin_resets_the_password, "password_reset", "admin"),
    "admin-reset-by-invite": RecoveryPath(admin_resets_by_invite_link, "password_reset", "admin"),
    "cli-set-password": RecoveryPath(operator_sets_the_password, "password_reset", "cli:"),
    "own-password-change": RecoveryPath(user_changes_their_password, "password_changed", "staff"),
    "invite-used": RecoveryPath(invite_is_used, "password_set", "staff", prepare=open_an_invite),
    "admin-disable": RecoveryPath(admin_disables_the_user, "user_disabled", "admin"),
    "cli-disable": RecoveryPath(operator_disables_the_user, "user_disabled", "cli:"),
    "admin-mfa-reset": RecoveryPath(admin_resets_the_second_factors, "mfa_reset", "admin", enrol_a_second_factor),
    "cli-mfa-reset": RecoveryPath(operator_resets_the_second_factors, "mfa_reset", "cli:", enrol_a_second_factor),
}


@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_recovery_revokes_every_session_and_api_token(app, users, path):
    scene = Scene(app=app, users=users, admin=signed_in_client(app, users["admin"]), staff_sessions=[])
    if path.prepare is not None:
        path.prepare(scene)
    scene.staff_sessions = [signed_in_client(app, users["staff"]) for _ in range(2)]
    with app.app_context():
        staff = accounts.get_user("staff")
        mine = [tokens.create_token(staff, name="laptop"), tokens.create_token(staff, name="ci", expires_days=None)]
        theirs = tokens.create_token(accounts.get_user("other"), name="other's")
        mine_ids = {issued.token.id for issued in mine}
        before = db.session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    assert all(api_status(app, issued.secret) == 200 for issued in mine)
    assert all(signed_in(client) for client in scene.staff_sessions)

    path.act(scene)

    # Every API token of the user stops working at once: 401 on the API.
    assert [api_status(app, issued.secret) for issued in mine] == [401, 401]
    # Every session of the user ended, whichever browser acted.
    assert not any(signed_in(client) for client in scene.staff_sessions)
    # Nobody else lost anything.
    assert api_status(app, theirs.secret) == 200
    assert signed_in(scene.admin)
    with app.app_context():
        rows = list(
            db.session.scalars(select(AuditEvent).where(AuditEvent.event == "token.revoked", AuditEvent.seq > before))
        )
        revoked_at = db.session.execute(select(ApiToken.id, ApiToken.revoked_at)).all()
    # Each token audited once, with the reason and who acted.
    assert sorted(row.detail["token_id"] for row in rows) == sorted(mine_ids)
    assert {row.detail["reason"] for row in rows} == {path.reason}
    assert all(row.actor_name.startswith(path.actor) for row in rows)
    assert all(issued.secret not in repr(row.detail) for row in rows for issued in mine)
    assert {token_id for token_id, at in revoked_at if at is not None} == mine_ids


def test_a_refused_change_revokes_nothing(app, users):
    """Disabling the last active admin is refused: their sessions and tokens stay, no ``token.revoked``."""
    admin = signed_in_client(app, users["admin"])
    with app.app_context():
        issued = tokens.create_token(accounts.get_user("admin"), name="admin's")
    result = app.test_cli_runner().invoke(users_group, ["disable", "admin"])
    assert result.exit_code != 0 and "last active admin" in result.output
    assert api_status(app, issued.secret) == 200 and signed_in(admin)
    with app.app_context():
        assert db.session.scalars(select(AuditEvent).where(AuditEvent.event == "token.revoked")).all() == []


def test_the_account_and_users_pages_say_what_a_reset_revokes(app, users):
    account = signed_in_client(app, users["staff"]).get("/account").get_data(as_text=True)
    assert "signs out every session" in account and "revokes all your API tokens" in account
    assert "Signing out keeps them valid" in account
    admin_page = signed_in_client(app, users["admin"]).get("/admin/users").get_data(as_text=True)
    assert "sign the user out of every session and revoke all their API tokens" in admin_page
