"""OIDC sign-in against a real OpenID provider (panva's oidc-provider, tests/oidc_idp.py), through its pages.

The browser's part of the flow is played with ``requests`` at the provider's
real login and consent pages; the gateway's part with the Flask test client,
whose app calls the provider over HTTP for discovery, keys, code and userinfo.
Attacks that need tokens no honest provider issues are in tests/test_oidc_attacks.py.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway.db.models import AuditEvent, GroupMember, User, UserSession
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from tests.conftest import csrf_token_from, login_response, seed_session
from tests.oidc_idp import ACCOUNTS, CLIENT_ID, Idp, idp_browser, path_of


@pytest.fixture
def idp(idp: Idp) -> Idp:
    """The session's provider with the standard accounts back (a test may have changed them)."""
    idp.set_accounts(ACCOUNTS)
    return idp


@pytest.fixture
def oidc_app(make_app, idp: Idp) -> Flask:
    return make_app(**idp.settings())


def start(client: FlaskClient, query: str = "") -> str:
    response = client.get("/login/oidc" + query)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return response.headers["Location"]


def sign_in(client: FlaskClient, idp: Idp, login: str = "alice", query: str = "", **kwargs: Any):
    callback = idp.authorize(start(client, query), login, **kwargs)
    return client.get(path_of(callback))


def failures(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "auth.login_failed"))
        return [(row.outcome, row.detail) for row in rows]


def user_named(app: Flask, username: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        if user is not None:
            db.session.expunge(user)
        return user


def test_sign_in_through_the_providers_pages(oidc_app, idp, caplog):
    caplog.set_level(logging.DEBUG)
    with oidc_app.app_context():
        groups.create_group("ops")
    client = oidc_app.test_client()
    authorization = start(client, "?next=/runs")
    query = parse_qs(urlsplit(authorization).query)
    assert authorization.startswith(idp.issuer + "/auth?")
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == ["http://localhost/login/oidc/callback"]  # PUBLIC_BASE_URL, not the Host
    assert "nonce" in query and "state" in query
    browser = idp_browser()
    callback = idp.authorize(authorization, "alice", browser=browser)
    assert browser.pages_seen == ["login", "consent"]
    code = parse_qs(urlsplit(callback).query)["code"][0]
    response = client.get(path_of(callback))
    assert response.status_code == 302 and response.headers["Location"] == "/runs"
    assert client.get("/account").status_code == 200
    alice = user_named(oidc_app, "alice")
    assert alice is not None and (alice.source, alice.idp_issuer, alice.idp_subject) == ("oidc", idp.issuer, "alice")
    assert alice.display_name == "Alice Ops"
    with oidc_app.app_context():
        memberships = db.session.scalars(select(GroupMember).where(GroupMember.user_id == alice.id)).all()
        assert [(m.group.name, m.origin) for m in memberships] == [("ops", "idp")]
        record = db.session.scalars(select(UserSession).where(UserSession.user_id == alice.id)).one()
        assert record.method == "oidc"
        ledger = " ".join(str((e.event, e.detail)) for e in db.session.scalars(select(AuditEvent)))
        login = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "auth.login")).one()
    assert login.detail["method"] == "oidc" and login.detail["groups_added"] == ["ops"]
    assert code not in ledger and code not in caplog.text
    # The pre-login state left with the callback: replaying it finds nothing to answer.
    assert client.get(path_of(callback)).status_code == 400


def test_single_sign_on_at_the_provider_skips_its_pages(oidc_app, idp):
    browser = idp_browser()
    assert sign_in(oidc_app.test_client(), idp, browser=browser).status_code == 302
    assert sign_in(oidc_app.test_client(), idp, browser=browser).status_code == 302
    assert browser.pages_seen == ["login", "consent"]  # the second sign-in asked nothing


def test_the_sign_in_page_follows_auth_methods(make_app, idp, users):
    both = make_app(**idp.settings()).test_client()
    page = both.get("/login?next=/runs").get_data(as_text=True)
    assert "Sign in with Test IdP" in page and 'href="/login/oidc?next=/runs"' in page and 'name="password"' in page
    only = make_app(**idp.settings(AUTH_METHODS="oidc")).test_client()
    page = only.get("/login").get_data(as_text=True)
    assert "Sign in with Test IdP" in page and 'name="password"' not in page
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    refused = only.post("/login", data={"username": "staff", "password": users["staff"].password, "csrf_token": csrf})
    assert refused.status_code == 403 and "turned off" in refused.get_data(as_text=True)
    local = make_app().test_client()
    assert "Sign in with" not in local.get("/login").get_data(as_text=True)
    assert local.get("/login/oidc").status_code == 404 and local.get("/login/oidc/callback").status_code == 404


def test_an_unsafe_next_lands_on_the_dashboard(oidc_app, idp):
    response = sign_in(oidc_app.test_client(), idp, query="?next=//evil.example/x")
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_the_user_aborting_at_the_provider_is_idp_error(oidc_app, idp):
    client = oidc_app.test_client()
    state = parse_qs(urlsplit(start(client)).query)["state"][0]
    response = client.get(f"/login/oidc/callback?error=access_denied&state={state}&iss={idp.issuer}")
    assert response.status_code == 401
    assert "refused the sign-in (access_denied)" in response.get_data(as_text=True)
    assert failures(oidc_app) == [("idp_error", {"method": "oidc"})]


def test_a_callback_with_no_pre_login_state_is_refused(oidc_app, idp):
    other = oidc_app.test_client()
    callback = idp.authorize(start(other))  # a real code and state, from another browser's sign-in
    response = oidc_app.test_client().get(path_of(callback))
    assert response.status_code == 400 and "did not start in this browser" in response.get_data(as_text=True)
    assert failures(oidc_app) == [("bad_state", {"method": "oidc"})]
    assert user_named(oidc_app, "alice") is None


def test_a_tampered_state_is_refused_and_spends_the_pending_sign_in(oidc_app, idp):
    client = oidc_app.test_client()
    callback = idp.authorize(start(client))
    state = parse_qs(urlsplit(callback).query)["state"][0]
    tampered = path_of(callback).replace(f"state={state}", f"state={state[:-2]}xx")
    assert client.get(tampered).status_code == 400
    assert client.get(path_of(callback)).status_code == 400  # the genuine answer comes too late: single use
    assert [reason for reason, _ in failures(oidc_app)] == ["bad_state", "bad_state"]
    assert user_named(oidc_app, "alice") is None


def test_a_replayed_code_is_refused_by_the_provider(oidc_app, idp):
    first = oidc_app.test_client()
    callback = idp.authorize(start(first))
    assert first.get(path_of(callback)).status_code == 302
    code = parse_qs(urlsplit(callback).query)["code"][0]
    # An attacker with the used code starts a sign-in of their own and offers it with their own state.
    attacker = oidc_app.test_client()
    state = parse_qs(urlsplit(start(attacker)).query)["state"][0]
    response = attacker.get(f"/login/oidc/callback?code={code}&state={state}&iss={idp.issuer}")
    assert response.status_code == 400 and "did not accept the sign-in" in response.get_data(as_text=True)
    assert failures(oidc_app) == [("code_rejected", {"method": "oidc"})]
    assert attacker.get("/account").status_code == 302


def test_a_disabled_user_cannot_sign_in(oidc_app, idp):
    assert sign_in(oidc_app.test_client(), idp).status_code == 302
    with oidc_app.app_context():
        accounts.set_active(accounts.get_user("alice"), False)
    response = sign_in(oidc_app.test_client(), idp)
    assert response.status_code == 403 and "disabled" in response.get_data(as_text=True)
    assert failures(oidc_app)[-1] == ("user_disabled", {"method": "oidc"})


def test_a_name_held_by_a_local_account_refuses_the_sign_in(oidc_app, idp, users):
    idp.set_accounts({"mallory": {"preferred_username": "Staff", "groups": ["admins"]}})
    response = sign_in(oidc_app.test_client(), idp, "mallory")
    assert response.status_code == 409 and "belongs to another account" in response.get_data(as_text=True)
    assert failures(oidc_app) == [("username_taken", {"method": "oidc"})]
    staff = user_named(oidc_app, "staff")
    assert staff is not None and staff.source == "local" and staff.idp_subject is None
    assert login_response(oidc_app.test_client(), "staff", users["staff"].password).status_code == 302


def test_no_username_claim_is_refused(oidc_app, idp):
    idp.set_accounts({"nameless": {"groups": []}})
    response = sign_in(oidc_app.test_client(), idp, "nameless")
    assert response.status_code == 403 and "did not send a username" in response.get_data(as_text=True)
    assert failures(oidc_app) == [("no_username", {"method": "oidc"})]


def test_a_group_removed_at_the_provider_takes_its_grant_away(oidc_app, idp):
    with oidc_app.app_context():
        groups.create_group("db-admins")
        groups.add_grant("db-admins", "uptime")
        groups.create_group("ops")
    idp.set_accounts({"alice": {**ACCOUNTS["alice"], "groups": ["ops", "db-admins"]}})
    client = oidc_app.test_client()
    assert sign_in(client, idp).status_code == 302
    assert [c["name"] for c in client.get("/api/v1/commands").get_json()["items"]] == ["uptime"]
    idp.set_accounts({"alice": {**ACCOUNTS["alice"], "groups": ["ops"]}})
    client = oidc_app.test_client()
    assert sign_in(client, idp).status_code == 302
    assert client.get("/api/v1/commands").get_json()["items"] == []
    with oidc_app.app_context():
        login = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "auth.login")).all()[-1]
    assert login.detail["groups_removed"] == ["db-admins"]


def test_groups_only_in_userinfo_are_fetched_and_only_then(oidc_app, idp):
    with oidc_app.app_context():
        groups.create_group("ops")
    before = idp.stats()["userinfo"]
    assert sign_in(oidc_app.test_client(), idp).status_code == 302
    assert idp.stats()["userinfo"] == before  # the ID token carried the groups: no userinfo call
    idp.claims_in_userinfo_only(True)
    try:
        client = oidc_app.test_client()
        idp.set_accounts({"carol": {"preferred_username": "carol", "groups": ["ops"]}})
        assert sign_in(client, idp, "carol").status_code == 302
    finally:
        idp.claims_in_userinfo_only(False)
    assert idp.stats()["userinfo"] == before + 1
    assert user_named(oidc_app, "carol") is not None
    with oidc_app.app_context():
        carol = db.session.scalar(select(User).where(User.username == "carol"))
        assert [m.group.name for m in carol.memberships] == ["ops"]


def test_a_required_acr_the_provider_does_not_confirm_is_refused(make_app, idp):
    app = make_app(**idp.settings(OIDC_REQUIRED_ACR="urn:gateway:strong"))
    response = sign_in(app.test_client(), idp)
    assert response.status_code == 403 and "sign-in strength" in response.get_data(as_text=True)
    assert failures(app) == [("acr_not_met", {"method": "oidc"})]


def test_an_unreachable_provider_is_a_503_on_the_sign_in_page(make_app, idp):
    app = make_app(**idp.settings(OIDC_ISSUER="http://127.0.0.1:9"))
    response = app.test_client().get("/login/oidc")
    assert response.status_code == 503 and "cannot be reached" in response.get_data(as_text=True)
    assert failures(app) == [("idp_unavailable", {"method": "oidc"})]


def test_a_key_rotation_is_followed_and_keys_are_fetched_once_per_key_set(oidc_app, idp):
    before = idp.stats()["jwks"]
    for _ in range(3):
        assert sign_in(oidc_app.test_client(), idp).status_code == 302
    assert idp.stats()["jwks"] == before + 1
    idp.rotate_keys()
    for _ in range(3):
        assert sign_in(oidc_app.test_client(), idp).status_code == 302
    assert idp.stats()["jwks"] == before + 2
    assert failures(oidc_app) == []


def test_signing_out_offers_the_providers_sign_out(oidc_app, idp, users):
    client = oidc_app.test_client()
    assert sign_in(client, idp).status_code == 302
    csrf = csrf_token_from(client.get("/account").get_data(as_text=True))
    page = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=True).get_data(as_text=True)
    assert "You are signed out." in page
    expected = (
        f"{idp.issuer}/session/end?client_id={CLIENT_ID}&amp;post_logout_redirect_uri=http%3A%2F%2Flocalhost%2Flogin"
    )
    assert expected in page
    assert client.get("/account").status_code == 302  # the gateway session ended
    assert expected not in client.get("/login").get_data(as_text=True)  # offered once
    local = oidc_app.test_client()
    assert login_response(local, "staff", users["staff"].password).status_code == 302
    csrf = csrf_token_from(local.get("/account").get_data(as_text=True))
    assert "/session/end" not in local.post("/logout", data={"csrf_token": csrf}, follow_redirects=True).get_data(
        as_text=True
    )


def create_token(client: FlaskClient, **extra: str):
    csrf = csrf_token_from(client.get("/account").get_data(as_text=True))
    return client.post("/account/tokens", data={"csrf_token": csrf, "name": "ci", "expires": "30", **extra})


def test_a_token_needs_a_recent_oidc_sign_in_and_sign_in_again_asks_the_provider(oidc_app, idp):
    client = oidc_app.test_client()
    browser = idp_browser()
    assert sign_in(client, idp, browser=browser).status_code == 302
    assert create_token(client).status_code == 303  # signed in just now: no password to ask for
    with client.session_transaction() as cookie:
        cookie["oidc_auth_at"] -= 11 * 60
    page = client.get("/account").get_data(as_text=True)
    assert 'id="sign-in-again"' in page and 'name="current_password"' not in page  # nor a password form at all
    refused = create_token(client)
    assert refused.status_code == 403 and "sign in again" in refused.get_data(as_text=True)
    again = start(client, "?next=/account&max_age=0")
    assert parse_qs(urlsplit(again).query)["max_age"] == ["0"]
    response = client.get(path_of(idp.authorize(again, browser=browser)))
    assert response.headers["Location"] == "/account"
    assert browser.pages_seen == ["login", "consent", "login"]  # max_age=0: the provider asked again
    assert create_token(client).status_code == 303
    with oidc_app.app_context():
        assert len(tokens.tokens_of(accounts.get_user("alice"))) == 2


def test_a_header_session_creates_a_token_without_a_question_and_an_old_oidc_one_cannot(oidc_app, idp, users):
    client = oidc_app.test_client()
    seed_session(oidc_app, client, users["staff"].id)
    with oidc_app.app_context():
        db.session.execute(UserSession.__table__.update().values(method="header"))
        db.session.commit()
    assert 'id="token-current-password"' not in client.get("/account").get_data(as_text=True)
    assert create_token(client).status_code == 303
    # An OIDC account on a session that did not come from a sign-in at the IdP just now is asked to sign in again.
    assert sign_in(oidc_app.test_client(), idp).status_code == 302
    stale = oidc_app.test_client()
    seed_session(oidc_app, stale, user_named(oidc_app, "alice").id)
    assert create_token(stale).status_code == 403
