"""Server-side sessions over HTTP: fixation, logout and replay, idle and absolute timeouts, revocation."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from gateway.db.models import AuditEvent, UserSession
from gateway.db.units import write_transaction
from gateway.identity import accounts, tokens
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow
from tests.conftest import PASSWORDS, csrf_token_from, login_response

COOKIE = "gateway_session"


def signed_in(client) -> bool:
    response = client.get("/")
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login")
        return False
    assert response.status_code == 200
    return True


def cookie_value(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return None if cookie is None else cookie.value


def client_with_cookie(app, value: str):
    fresh = app.test_client()
    fresh.set_cookie(COOKIE, value)
    return fresh


def sign_out(client):
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    return client.post("/logout", data={"csrf_token": token})


def live_records(app, user_id: int) -> list[UserSession]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
            )
        )


def shift_session(app, user_id: int, **ages: timedelta) -> None:
    """Make the user's live session records older: ``last_seen_at=timedelta(...)`` / ``created_at=...`` ago."""
    now = utcnow()
    values = {column: now - age for column, age in ages.items()}
    with app.app_context(), write_transaction() as tx:
        tx.execute(
            update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None)).values(**values)
        )


def last_seen(app, user_id: int):
    [record] = live_records(app, user_id)
    return record.last_seen_at


# --- fixation --------------------------------------------------------------------------------


def test_sign_in_issues_a_new_session_cookie(client, users):
    client.get("/login")
    before = cookie_value(client)
    assert before is not None  # the CSRF token lives in the session
    assert login_response(client, "staff", PASSWORDS["staff"]).status_code == 302
    after = cookie_value(client)
    assert after is not None and after != before
    assert signed_in(client)


def test_cookie_planted_before_sign_in_never_becomes_authenticated(app, users):
    attacker = app.test_client()
    attacker.get("/login")
    planted = cookie_value(attacker)
    victim = client_with_cookie(app, planted)
    assert login_response(victim, "staff", PASSWORDS["staff"]).status_code == 302
    assert signed_in(victim)
    assert cookie_value(victim) != planted
    assert not signed_in(client_with_cookie(app, planted))
    assert not signed_in(attacker)


def test_signing_in_again_replaces_the_earlier_session(client, users, app):
    """A second sign-in in the same browser must not leave the first cookie valid alongside the new one."""
    login_response(client, "staff", PASSWORDS["staff"])
    first = cookie_value(client)
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    response = client.post("/login", data={"username": "staff", "password": PASSWORDS["staff"], "csrf_token": token})
    assert response.status_code == 302
    assert signed_in(client)
    assert not signed_in(client_with_cookie(app, first))
    assert len(live_records(app, users["staff"].id)) == 1


# --- logout ----------------------------------------------------------------------------------


def test_logout_by_get_is_not_allowed_and_changes_nothing(client, login):
    login("staff")
    response = client.get("/logout")
    assert response.status_code == 405
    assert "POST" in response.headers.get("Allow", "")
    assert signed_in(client)


def test_logout_ends_the_session_and_a_replayed_cookie_is_refused(client, login, app, users):
    login("staff")
    captured = cookie_value(client)
    assert signed_in(client_with_cookie(app, captured))  # the copy works while the session lives

    response = sign_out(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert not signed_in(client)

    replay = client_with_cookie(app, captured)
    response = replay.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert live_records(app, users["staff"].id) == []


def test_logout_of_one_browser_leaves_another_signed_in(app, users):
    laptop, phone = app.test_client(), app.test_client()
    login_response(laptop, "staff", PASSWORDS["staff"])
    login_response(phone, "staff", PASSWORDS["staff"])
    sign_out(laptop)
    assert not signed_in(laptop)
    assert signed_in(phone)


# --- idle and absolute timeouts --------------------------------------------------------------


def test_idle_session_expires(make_app, users):
    app = make_app(SESSION_IDLE_MINUTES=10)
    client = app.test_client()
    login_response(client, "staff", PASSWORDS["staff"])
    user_id = users["staff"].id

    shift_session(app, user_id, last_seen_at=timedelta(minutes=9))
    assert signed_in(client)  # inside the window: still valid (and this request touches it)

    shift_session(app, user_id, last_seen_at=timedelta(minutes=10, seconds=30))
    assert not signed_in(client)
    assert not signed_in(client)  # stays signed out


def test_session_expires_after_the_absolute_lifetime_despite_activity(make_app, users):
    app = make_app(SESSION_MAX_HOURS=2)
    client = app.test_client()
    login_response(client, "staff", PASSWORDS["staff"])
    user_id = users["staff"].id

    shift_session(app, user_id, created_at=timedelta(hours=1, minutes=59))
    assert signed_in(client)

    shift_session(app, user_id, created_at=timedelta(hours=2, minutes=1), last_seen_at=timedelta(seconds=1))
    assert not signed_in(client)


def test_expired_session_can_sign_in_again(make_app, users):
    app = make_app(SESSION_IDLE_MINUTES=5)
    client = app.test_client()
    login_response(client, "staff", PASSWORDS["staff"])
    shift_session(app, users["staff"].id, last_seen_at=timedelta(minutes=6))
    assert not signed_in(client)
    assert login_response(client, "staff", PASSWORDS["staff"]).status_code == 302
    assert signed_in(client)


def test_background_requests_do_not_extend_the_idle_timer(client, login, app, users):
    login("staff")
    user_id = users["staff"].id
    shift_session(app, user_id, last_seen_at=timedelta(minutes=5))
    before = last_seen(app, user_id)

    assert client.get("/", headers={"X-Gateway-Background": "1"}).status_code == 200
    assert last_seen(app, user_id) == before
    assert client.get("/", headers={"Accept": "text/event-stream"}).status_code == 200
    assert last_seen(app, user_id) == before

    assert client.get("/").status_code == 200
    touched = last_seen(app, user_id)
    assert touched > before + timedelta(minutes=4)
    assert abs(utcnow() - touched) < timedelta(minutes=1)


def test_background_requests_alone_let_the_session_expire(make_app, users):
    app = make_app(SESSION_IDLE_MINUTES=10)
    client = app.test_client()
    login_response(client, "staff", PASSWORDS["staff"])
    user_id = users["staff"].id
    shift_session(app, user_id, last_seen_at=timedelta(minutes=9))
    assert client.get("/", headers={"X-Gateway-Background": "1"}).status_code == 200
    # Two more minutes pass with only tile refreshes: the user has been idle for 11 minutes.
    shift_session(app, user_id, last_seen_at=timedelta(minutes=11))
    response = client.get("/", headers={"X-Gateway-Background": "1"})
    assert response.status_code == 302


# --- revocation by account changes -----------------------------------------------------------


def test_disabling_a_user_ends_their_sessions_at_once(app, users):
    staff, other = app.test_client(), app.test_client()
    login_response(staff, "staff", PASSWORDS["staff"])
    login_response(other, "other", PASSWORDS["other"])
    with app.app_context():
        accounts.set_active(accounts.get_user("staff"), False)
    assert not signed_in(staff)
    assert signed_in(other)
    assert live_records(app, users["staff"].id) == []

    # Enabling the account again does not bring the old session back.
    with app.app_context():
        accounts.set_active(accounts.get_user("staff"), True)
    assert not signed_in(staff)
    assert login_response(staff, "staff", PASSWORDS["staff"]).status_code == 302


def test_changing_the_password_ends_every_session_of_that_user(app, users):
    laptop, phone, other = app.test_client(), app.test_client(), app.test_client()
    for client in (laptop, phone):
        login_response(client, "staff", PASSWORDS["staff"])
    login_response(other, "other", PASSWORDS["other"])
    with app.app_context():
        revoked = accounts.set_password(accounts.get_user("staff"), "a-brand-new-password-1")
    assert revoked.sessions == 2
    assert not signed_in(laptop)
    assert not signed_in(phone)
    assert signed_in(other)
    assert login_response(laptop, "staff", PASSWORDS["staff"]).status_code == 401
    assert login_response(laptop, "staff", "a-brand-new-password-1").status_code == 302


def test_session_cookie_flags(client, users):
    response = login_response(client, "staff", PASSWORDS["staff"])
    header = next(value for value in response.headers.getlist("Set-Cookie") if value.startswith(COOKIE + "="))
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header


def test_logging_out_ends_only_that_session_and_keeps_api_tokens(app, users):
    """Logout is not recovery: the other browser stays signed in and scripts keep their tokens."""

    laptop, phone = app.test_client(), app.test_client()
    login_response(laptop, "staff", PASSWORDS["staff"])
    login_response(phone, "staff", PASSWORDS["staff"])
    with app.app_context():
        issued = tokens.create_token(accounts.get_user("staff"), name="ci")
    bearer = {"Authorization": f"Bearer {issued.secret}"}

    assert sign_out(laptop).status_code == 302
    assert not signed_in(laptop)
    assert signed_in(phone)
    assert app.test_client().get("/api/v1/commands", headers=bearer).status_code == 200
    with app.app_context():
        assert tokens.tokens_of(accounts.get_user("staff"))[0].revoked_at is None
        assert db.session.scalars(select(AuditEvent).where(AuditEvent.event == "token.revoked")).all() == []
