"""Invite links over HTTP: an admin creates (or resets) a user, the user chooses a password.

What a user relies on: nobody can sign in as an invited user before the
link is used; the link works once, until it expires, and not after a newer
one replaced it; a forged link gets nowhere; the admin sees the link exactly
once; the token reaches neither the ledger nor the logs, and the database
keeps only its SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from gateway import audit
from gateway.cli.users import users_group
from gateway.db.models import AuditEvent, UserInvite
from gateway.identity import accounts
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow
from tests.conftest import csrf_token_from, login_response

INVITE_LINK = re.compile(r'id="invite-link" class="token" value="(http://[^"#]+/invite)#([A-Za-z0-9_-]+)"')
NEW_PASSWORD = "my-own-chosen-password-7"


@pytest.fixture
def admin(login):
    return login("admin")


def admin_post(client, url: str, data: dict | None = None):
    token = csrf_token_from(client.get("/admin/users").get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **(data or {})})


def invite_from(client, response) -> str:
    """Follow the post/redirect/get and read the one-time link; returns the token."""
    assert response.status_code == 303, response.get_data(as_text=True)
    match = INVITE_LINK.search(client.get(response.headers["Location"]).get_data(as_text=True))
    assert match, "no invite link on the page after the redirect"
    return match.group(2)


def create_invited(client, username: str = "newbie", **extra: str) -> str:
    return invite_from(
        client, admin_post(client, "/admin/users", {"username": username, "password_mode": "invite", **extra})
    )


def use_invite(app, code: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    """What the invited user's browser does: open /invite (no sign-in), submit the form."""
    client = app.test_client()
    page = client.get("/invite")
    assert page.status_code == 200
    data = {
        "csrf_token": csrf_token_from(page.get_data(as_text=True)),
        "code": code,
        "password": password,
        "password_confirm": password if confirm is None else confirm,
    }
    return client.post("/invite", data=data)


def users_list(app) -> list[str]:
    """What ``manage.py users list`` prints, one line per user."""
    result = app.test_cli_runner().invoke(users_group, ["list"])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def events(app, *names: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if names:
            query = query.where(AuditEvent.event.in_(names))
        return list(db.session.scalars(query))


def test_invited_user_chooses_a_password_then_signs_in(app, admin, users, caplog):
    caplog.set_level(logging.DEBUG)
    token = create_invited(admin, "newbie")

    # Shown once: the users page does not show the link again.
    again = admin.get("/admin/users").get_data(as_text=True)
    assert token not in again and "invited, no password yet" in again
    # Nobody can sign in before the link is used, whatever they try.
    for guess in ("", "x" * 12, token):
        assert login_response(app.test_client(), "newbie", guess).status_code in (400, 401)

    assert "newbie\tstaff\tinvited\tlocal" in users_list(app)

    done = use_invite(app, token)
    assert done.status_code == 303 and done.headers["Location"].endswith("/login")
    assert login_response(app.test_client(), "newbie", NEW_PASSWORD).status_code == 302
    assert "newbie\tstaff\tactive\tlocal" in users_list(app)

    created, invited = events(app, "admin.user_created")[-1], events(app, "admin.user_invited")[-1]
    assert created.detail == {"after": {"username": "newbie", "is_admin": False, "active": True}, "via": "invite"}
    assert invited.actor_name == "admin" and invited.detail["user"] == "newbie"
    assert invited.detail["reason"] == "created" and invited.detail["expires_at"]
    password_set = events(app, "auth.password_set")[-1]
    assert password_set.actor_name == "newbie" and password_set.source_ip == "127.0.0.1"
    assert password_set.detail == {
        "via": "invite", "invite_id": invited.detail["invite_id"], "sessions_ended": 0, "tokens_revoked": 0
    }  # fmt: skip
    # The token is in no audit row, no log record, and stored only as its SHA-256.
    assert all(token not in repr((row.params, row.detail, row.user_agent)) for row in events(app))
    assert all(token not in repr(record.__dict__) for record in caplog.records)
    with app.app_context():
        stored = db.session.scalars(select(UserInvite.token_hash)).all()
        assert stored == [hashlib.sha256(token.encode()).hexdigest()]
        assert audit.verify(db.session, audit.Keyring.from_config(app.config)).ok


@pytest.mark.both_engines  # the invite row is locked (FOR UPDATE) while it is used
def test_a_used_link_does_not_work_again(app, admin, users):
    token = create_invited(admin)
    assert use_invite(app, token).status_code == 303
    reused = use_invite(app, token, "someone-elses-password-1")
    assert reused.status_code == 400 and "already used" in reused.get_data(as_text=True)
    assert login_response(app.test_client(), "newbie", "someone-elses-password-1").status_code == 401
    failed = events(app, "auth.invite_failed")[-1]
    assert failed.outcome == "used" and failed.actor_name == "newbie" and token not in str(failed.detail)


def test_a_forged_link_is_refused_and_audited(app, admin, users):
    create_invited(admin)
    for forged in ("A" * 43, "", "x" * 500):
        response = use_invite(app, forged)
        assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)
    failed = events(app, "auth.invite_failed")
    assert [row.outcome for row in failed] == ["invalid"] * 3
    assert all(row.actor_id is None and row.detail == {"invite_id": None} for row in failed)
    assert all("AAAA" not in str(row.detail) for row in failed)


def test_an_expired_link_is_refused(app, admin, users):
    token = create_invited(admin)
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(update(UserInvite).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = use_invite(app, token)
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    assert events(app, "auth.invite_failed")[-1].outcome == "expired"
    assert "invite expired, no password yet" in admin.get("/admin/users").get_data(as_text=True)


def test_a_bad_password_keeps_the_link_usable(app, admin, users):
    token = create_invited(admin)
    short = use_invite(app, token, "short", "short")
    assert short.status_code == 400 and "at least 12 characters" in short.get_data(as_text=True)
    mismatch = use_invite(app, token, NEW_PASSWORD, "something-else-entirely")
    assert mismatch.status_code == 400 and "not the same" in mismatch.get_data(as_text=True)
    assert events(app, "auth.invite_failed", "auth.password_set") == []
    assert use_invite(app, token).status_code == 303


def test_the_invite_form_needs_its_csrf_token(app, admin, users):
    token = create_invited(admin)
    client = app.test_client()
    client.get("/invite")
    data = {"code": token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    assert client.post("/invite", data=data).status_code == 400
    assert login_response(app.test_client(), "newbie", NEW_PASSWORD).status_code == 401


def test_a_newer_invite_replaces_the_older_one(app, admin, users):
    first = create_invited(admin)
    newbie = accounts_id(app, "newbie")
    second = invite_from(admin, admin_post(admin, f"/admin/users/{newbie}/invite"))
    replaced = use_invite(app, first)
    assert replaced.status_code == 400 and "was replaced" in replaced.get_data(as_text=True)
    assert events(app, "auth.invite_failed")[-1].outcome == "revoked"
    assert use_invite(app, second).status_code == 303


def test_a_password_the_admin_sets_afterwards_replaces_the_link(app, admin, users):
    """The link handed out earlier must not override the password the admin generated later."""
    token = create_invited(admin)
    assert admin_post(admin, f"/admin/users/{accounts_id(app, 'newbie')}/reset-password").status_code == 303
    page = admin.get("/admin/users").get_data(as_text=True)
    generated = re.search(r'id="new-password" class="token" value="([^"]+)"', page).group(1)
    assert use_invite(app, token).status_code == 400
    assert login_response(app.test_client(), "newbie", generated).status_code == 302
    assert login_response(app.test_client(), "newbie", NEW_PASSWORD).status_code == 401


def test_a_disabled_user_cannot_use_their_link(app, admin, users):
    token = create_invited(admin)
    assert (
        admin_post(admin, f"/admin/users/{accounts_id(app, 'newbie')}/disable", {"confirm": "yes"}).status_code == 303
    )
    response = use_invite(app, token)
    assert response.status_code == 400 and "disabled" in response.get_data(as_text=True)


def test_reset_by_invite_ends_the_old_password_and_sessions_at_once(app, admin, users):
    staff = app.test_client()
    assert login_response(staff, "staff", users["staff"].password).status_code == 302
    token = invite_from(admin, admin_post(admin, f"/admin/users/{users['staff'].id}/invite"))
    assert staff.get("/account").status_code == 302  # signed out
    assert login_response(app.test_client(), "staff", users["staff"].password).status_code == 401
    updated = events(app, "admin.user_updated")[-1]
    assert updated.detail == {
        "user": "staff", "changed": ["password"], "via": "invite", "sessions_ended": 1, "tokens_revoked": 0
    }  # fmt: skip
    assert events(app, "admin.user_invited")[-1].detail["reason"] == "reset"
    assert use_invite(app, token).status_code == 303
    assert login_response(app.test_client(), "staff", NEW_PASSWORD).status_code == 302


def test_an_admin_cannot_reset_themself_by_invite(app, admin, users):
    response = admin_post(admin, f"/admin/users/{users['admin'].id}/invite")
    assert response.status_code == 303
    assert "cannot reset your own password" in admin.get("/admin/users").get_data(as_text=True)
    assert login_response(app.test_client(), "admin", users["admin"].password).status_code == 302
    assert events(app, "admin.user_invited") == []


def test_the_invite_page_needs_no_sign_in_but_the_allowed_network(make_app, users):
    app = make_app(ALLOWED_NETWORKS="127.0.0.0/8")
    client = app.test_client()
    assert client.get("/invite").status_code == 200
    assert client.get("/invite", environ_base={"REMOTE_ADDR": "10.66.0.1"}).status_code == 403


def test_creating_an_invited_user_refuses_a_duplicate_name(app, admin, users):
    response = admin_post(admin, "/admin/users", {"username": "staff", "password_mode": "invite"})
    assert response.status_code == 400 and "already exists" in response.get_data(as_text=True)
    assert events(app, "admin.user_invited") == []


def accounts_id(app, name: str) -> int:
    with app.app_context():
        return accounts.get_user(name).id
