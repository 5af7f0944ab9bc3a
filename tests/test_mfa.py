"""Second factors over HTTP: enrolment, the second sign-in step, lockout, replay, recovery codes, policy, reset.

Codes come from ``pyotp`` (what an authenticator app computes) for the time
step before, at or after now, always increasing: the gateway accepts each step
at most once per user, so a test that signs in twice uses a later step the
second time, as a person waiting for the app's next code would.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway.cli.users import users_group
from gateway.db.models import AuditEvent, MfaRecoveryCode, MfaTotp
from gateway.identity import accounts, tokens
from gateway.platform.extensions import db
from tests.conftest import PASSWORDS, SAMPLE_RUN_ID, csrf_token_from, login_response, seed_session

SECRET_PATTERN = re.compile(r'id="totp-secret" class="token" value="([A-Z2-7]+)"')
RECOVERY_PATTERN = re.compile(r"<li><code>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</code></li>")


def code_at(secret: str, step_offset: int) -> str:
    """The code an app shows ``step_offset`` time steps (30 s each) from now."""
    return pyotp.TOTP(secret).at(time.time() + 30 * step_offset)


def post_form(client: FlaskClient, page: str, url: str, data: dict[str, str] | None = None, **kwargs):
    token = csrf_token_from(client.get(page).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **(data or {})}, **kwargs)


def events(app: Flask, *names: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.event.in_(names)).order_by(AuditEvent.seq)
        return list(db.session.scalars(query))


def enrol(app: Flask, user_id: int) -> tuple[str, list[str]]:
    """Set up an authenticator app for the user from a browser of theirs; the key and the recovery codes shown."""
    client = app.test_client()
    seed_session(app, client, user_id)
    assert post_form(client, "/account/mfa", "/account/mfa/totp").status_code == 303
    secret = SECRET_PATTERN.search(client.get("/account/mfa").get_data(as_text=True)).group(1)
    confirmed = post_form(client, "/account/mfa", "/account/mfa/totp/confirm", {"code": code_at(secret, -1)})
    assert confirmed.status_code == 303, confirmed.get_data(as_text=True)
    codes = RECOVERY_PATTERN.findall(client.get(confirmed.headers["Location"]).get_data(as_text=True))
    return secret, codes


def second_step(client: FlaskClient, code: str):
    return post_form(client, "/login/mfa", "/login/mfa", {"code": code})


def half_signed_in(app: Flask, name: str) -> FlaskClient:
    client = app.test_client()
    answer = login_response(client, name, PASSWORDS[name])
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login/mfa"), answer.headers
    return client


# A test's codes are computed at several moments; started this close to a step boundary, the steps
# could roll over mid-test (a "reused" code would be a new step, an older one out of the window).
STEP_SAFETY_SECONDS = 5


@pytest.fixture(autouse=True)
def within_one_time_step() -> None:
    """Start each test at least STEP_SAFETY_SECONDS before the next 30 s step, so its offsets mean what they say."""
    into_step = time.time() % 30
    if into_step > 30 - STEP_SAFETY_SECONDS:
        time.sleep(30 - into_step + 0.05)


@pytest.fixture
def mfa_app(make_app) -> Flask:
    return make_app(MFA_REQUIRED="none", LOGIN_MAX_ATTEMPTS=3)


# --- enrolment ---------------------------------------------------------------------------------------


def test_enrolment_shows_a_local_qr_code_and_the_key_and_is_confirmed_with_a_code(mfa_app, users):
    client = mfa_app.test_client()
    seed_session(mfa_app, client, users["staff"].id)
    assert "Set up an authenticator app" in client.get("/account/mfa").get_data(as_text=True)
    post_form(client, "/account/mfa", "/account/mfa/totp")
    page = client.get("/account/mfa").get_data(as_text=True)
    secret = SECRET_PATTERN.search(page).group(1)
    assert '<svg width="' in page and "segno" in page  # drawn here, not fetched from a QR service
    assert "http" not in page.split("<figure", 1)[1].split("</figure>", 1)[0]
    with mfa_app.app_context():
        sealed = db.session.get(MfaTotp, users["staff"].id).secret_sealed
    assert secret not in sealed  # encrypted at rest

    wrong = post_form(client, "/account/mfa", "/account/mfa/totp/confirm", {"code": "000000"})
    assert wrong.status_code == 400 and "does not match" in wrong.get_data(as_text=True)
    confirmed = post_form(client, "/account/mfa", "/account/mfa/totp/confirm", {"code": code_at(secret, 0)})
    assert confirmed.status_code == 303
    codes = RECOVERY_PATTERN.findall(client.get(confirmed.headers["Location"]).get_data(as_text=True))
    assert len(set(codes)) == 10
    again = client.get("/account/mfa").get_data(as_text=True)
    assert RECOVERY_PATTERN.findall(again) == [] and "10 unused recovery codes left" in again  # shown once
    with mfa_app.app_context():
        hashes = db.session.scalars(select(MfaRecoveryCode.code_hash)).all()
    assert len(hashes) == 10 and not set(codes) & set(hashes)
    [enrolled] = events(mfa_app, "auth.mfa_enrolled")
    assert enrolled.actor_name == "staff" and enrolled.detail == {"factor": "totp", "recovery_codes_issued": 10}
    assert secret not in repr(enrolled.detail)


def test_new_recovery_codes_replace_the_old_ones_after_the_password(mfa_app, users):
    _, old = enrol(mfa_app, users["staff"].id)
    client = mfa_app.test_client()
    seed_session(mfa_app, client, users["staff"].id)
    refused = post_form(client, "/account/mfa", "/account/mfa/recovery-codes", {"current_password": "nope"})
    assert refused.status_code == 400
    done = post_form(client, "/account/mfa", "/account/mfa/recovery-codes", {"current_password": PASSWORDS["staff"]})
    new = RECOVERY_PATTERN.findall(client.get(done.headers["Location"]).get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    client = half_signed_in(mfa_app, "staff")
    assert second_step(client, old[0]).status_code == 401
    assert second_step(client, new[0]).status_code == 302


# --- the second step ----------------------------------------------------------------------------------


def test_the_password_alone_leaves_a_session_that_reaches_nothing_but_the_second_step(mfa_app, users):
    secret, _ = enrol(mfa_app, users["admin"].id)
    client = half_signed_in(mfa_app, "admin")
    csrf = csrf_token_from(client.get("/login/mfa").get_data(as_text=True))
    for page in ("/", "/account", "/account/mfa", "/runs", "/admin/users", "/commands/echo"):
        answer = client.get(page)
        assert answer.status_code == 302 and answer.headers["Location"] == "/login/mfa", page
    posted = client.post("/account/tokens", data={"csrf_token": csrf, "name": "x", "current_password": "y"})
    assert posted.status_code == 302 and posted.headers["Location"] == "/login/mfa"
    api = {"X-CSRFToken": csrf}
    for method, url in [
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/commands"),
        ("GET", f"/api/v1/runs/{SAMPLE_RUN_ID}/stream"),  # a signed-in owner would get 404 here; this is the gate
        ("GET", f"/api/v1/runs/{SAMPLE_RUN_ID}?wait=5"),
        ("POST", "/api/v1/commands/echo/runs"),
        ("POST", "/shell2http/echo"),
    ]:
        answer = client.open(url, method=method, headers=api, json={"params": {}})
        assert answer.status_code == 401, (method, url, answer.status_code)
        assert answer.get_json()["error"]["code"] == "unauthorized"
    assert events(mfa_app, "auth.login") == []  # not signed in yet

    signed = second_step(client, code_at(secret, 0))
    assert signed.status_code == 302 and signed.headers["Location"] == "/"
    assert client.get("/admin/users").status_code == 200
    [login] = events(mfa_app, "auth.login")
    assert login.actor_name == "admin" and login.detail == {"method": "local", "mfa": "totp"}


def test_a_wrong_code_and_a_reused_code_are_refused(mfa_app, users):
    secret, _ = enrol(mfa_app, users["staff"].id)
    client = half_signed_in(mfa_app, "staff")
    wrong = second_step(client, "123456" if code_at(secret, 0) != "123456" else "654321")
    assert wrong.status_code == 401 and "not right" in wrong.get_data(as_text=True)
    code = code_at(secret, 0)
    assert second_step(client, code).status_code == 302
    # A code seen once (shoulder-surfed, phished, replayed) is refused in its window, and so is an older one.
    other = half_signed_in(mfa_app, "staff")
    assert second_step(other, code).status_code == 401
    assert second_step(other, code_at(secret, -1)).status_code == 401
    assert other.get("/").headers["Location"] == "/login/mfa"
    assert second_step(other, code_at(secret, 1)).status_code == 302  # the app's next code
    failed = events(mfa_app, "auth.mfa_failed")
    assert [event.detail["factor"] for event in failed] == ["totp", "totp", "totp"]
    assert all(event.actor_name == "staff" and event.outcome == "invalid" for event in failed)


def test_wrong_codes_count_toward_the_lockout(mfa_app, users):
    secret, codes = enrol(mfa_app, users["staff"].id)
    client = half_signed_in(mfa_app, "staff")
    # The password was right, yet the count is not cleared: each wrong code counts (LOGIN_MAX_ATTEMPTS=3).
    assert second_step(client, "000000").status_code == 401
    assert second_step(client, "not-a-code").status_code == 401
    assert second_step(client, "111111").status_code == 401
    locked = second_step(client, code_at(secret, 0))
    assert locked.status_code == 401 and "Too many failed" in locked.get_data(as_text=True)
    assert second_step(client, codes[0]).status_code == 401  # recovery codes wait out the lock too
    assert client.get("/").headers["Location"] == "/login/mfa"
    # The password itself is refused while the name is locked.
    assert login_response(mfa_app.test_client(), "staff", PASSWORDS["staff"]).status_code == 401
    assert [event.outcome for event in events(mfa_app, "auth.locked")] == ["locked"]
    with mfa_app.app_context():
        assert accounts.unlock("staff")
    assert second_step(client, code_at(secret, 0)).status_code == 302


def test_codes_draw_on_the_sign_in_rate_limits(make_app, users):
    app = make_app(MFA_REQUIRED="none", LOGIN_RATE_LIMIT="4/minute", LOGIN_MAX_ATTEMPTS=50)
    enrol(app, users["staff"].id)
    client = half_signed_in(app, "staff")  # 1
    for _ in range(3):  # 2, 3, 4
        assert second_step(client, "000000").status_code == 401
    assert second_step(client, "000000").status_code == 429
    assert login_response(app.test_client(), "staff", PASSWORDS["staff"]).status_code == 429  # same buckets


def test_a_recovery_code_works_once(mfa_app, users):
    _, codes = enrol(mfa_app, users["staff"].id)
    client = half_signed_in(mfa_app, "staff")
    assert second_step(client, codes[3].upper().replace("-", " ")).status_code == 302  # as typed from paper
    [used] = events(mfa_app, "auth.mfa_recovery_used")
    assert used.actor_name == "staff" and used.detail == {"remaining": 9}
    assert events(mfa_app, "auth.login")[-1].detail == {"method": "local", "mfa": "recovery_code"}
    again = half_signed_in(mfa_app, "staff")
    assert second_step(again, codes[3]).status_code == 401
    assert events(mfa_app, "auth.mfa_failed")[-1].detail["factor"] == "recovery_code"
    _, other_codes = enrol(mfa_app, users["other"].id)
    assert second_step(again, other_codes[0]).status_code == 401  # someone else's code is no code


def test_giving_up_the_second_step_ends_the_half_signed_in_session(mfa_app, users):
    enrol(mfa_app, users["staff"].id)
    client = half_signed_in(mfa_app, "staff")
    assert post_form(client, "/login/mfa", "/login/mfa/cancel").headers["Location"] == "/login"
    assert client.get("/login/mfa").headers["Location"].startswith("/login?")
    assert client.get("/").headers["Location"].startswith("/login?")


# --- policy -------------------------------------------------------------------------------------------


def test_mfa_required_for_admins_sends_an_admin_to_enrol_first_and_not_staff(make_app, users):
    app = make_app(MFA_REQUIRED="admins")
    admin = app.test_client()
    assert login_response(admin, "admin", PASSWORDS["admin"]).status_code == 302
    for page in ("/", "/admin/users", "/account"):
        answer = admin.get(page)
        assert answer.status_code == 302 and answer.headers["Location"] == "/account/mfa", page
    refused = admin.get("/api/v1/commands")
    assert refused.status_code == 403 and refused.get_json()["error"]["details"] == {"mfa": "enrolment required"}
    assert "before you continue" in admin.get("/account/mfa").get_data(as_text=True)
    # A token minted earlier is a credential of its own: the API answers it.
    with app.app_context():
        issued = tokens.create_token(accounts.get_user("admin"), name="ci")
    assert admin.get("/api/v1/commands", headers={"Authorization": f"Bearer {issued.secret}"}).status_code == 200

    staff = app.test_client()
    assert login_response(staff, "staff", PASSWORDS["staff"]).status_code == 302
    assert staff.get("/").status_code == 200

    enrol(app, users["admin"].id)
    assert admin.get("/admin/users").status_code == 200  # enrolled: the session that enrolled goes on


def test_mfa_required_for_all_covers_staff_but_not_accounts_from_an_identity_provider(make_app, users):
    app = make_app(MFA_REQUIRED="all")
    staff = app.test_client()
    seed_session(app, staff, users["staff"].id)
    assert staff.get("/").headers["Location"] == "/account/mfa"
    with app.app_context():
        user = accounts.get_user("other")
        user.source, user.password_hash = "oidc", None
        db.session.commit()
    oidc = app.test_client()
    seed_session(app, oidc, users["other"].id)
    assert oidc.get("/").status_code == 200
    assert "identity provider" in oidc.get("/account/mfa").get_data(as_text=True)
    assert post_form(oidc, "/account/mfa", "/account/mfa/totp").status_code == 303
    with app.app_context():
        assert db.session.get(MfaTotp, users["other"].id) is None


# --- reset --------------------------------------------------------------------------------------------


def test_an_admin_reset_removes_the_factors_and_ends_sessions_and_tokens(mfa_app, users):
    secret, _ = enrol(mfa_app, users["staff"].id)
    staff = half_signed_in(mfa_app, "staff")
    assert second_step(staff, code_at(secret, 0)).status_code == 302
    with mfa_app.app_context():
        issued = tokens.create_token(accounts.get_user("staff"), name="laptop")
    admin = mfa_app.test_client()
    seed_session(mfa_app, admin, users["admin"].id)
    page = admin.get("/admin/users").get_data(as_text=True)
    assert page.count("Reset MFA") == 1  # only staff has second factors
    done = post_form(admin, "/admin/users", f"/admin/users/{users['staff'].id}/reset-mfa")
    assert done.status_code == 303
    flashed = admin.get("/admin/users").get_data(as_text=True)
    assert "2 sessions ended and 1 API token revoked" in flashed  # the enrolling browser and the signed-in one
    assert staff.get("/").headers["Location"].startswith("/login")
    bearer = {"Authorization": f"Bearer {issued.secret}"}
    assert mfa_app.test_client().get("/api/v1/commands", headers=bearer).status_code == 401
    [reset] = events(mfa_app, "admin.mfa_reset")
    assert reset.actor_name == "admin"
    assert reset.detail == {
        "user": "staff", "factors": ["totp", "recovery_codes"], "sessions_ended": 2, "tokens_revoked": 1,
    }  # fmt: skip
    assert [e.detail["reason"] for e in events(mfa_app, "token.revoked")] == ["mfa_reset"]
    # The password alone signs in again; nothing is left to reset.
    assert login_response(mfa_app.test_client(), "staff", PASSWORDS["staff"]).headers["Location"] == "/"
    assert "no second factor" in post_form(
        admin, "/admin/users", f"/admin/users/{users['staff'].id}/reset-mfa", follow_redirects=True
    ).get_data(as_text=True)


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_manage_py_users_reset_mfa(mfa_app, users):
    enrol(mfa_app, users["staff"].id)
    result = mfa_app.test_cli_runner().invoke(users_group, ["reset-mfa", "staff"])
    assert result.exit_code == 0, result.output
    assert "second factors of staff removed (totp, recovery_codes)" in result.output
    assert events(mfa_app, "admin.mfa_reset")[-1].actor_name.startswith("cli:")
    again = mfa_app.test_cli_runner().invoke(users_group, ["reset-mfa", "staff"])
    assert again.exit_code != 0 and "no second factor" in again.output


# --- secret-key rotation ------------------------------------------------------------------------------


def test_codes_still_work_after_a_secret_key_rotation_that_keeps_the_old_key(make_app, users):
    before = make_app(MFA_REQUIRED="none", SECRET_KEY="k" * 40)
    secret, _ = enrol(before, users["staff"].id)
    dropped = make_app(MFA_REQUIRED="none", SECRET_KEY="n" * 40)
    client = half_signed_in(dropped, "staff")
    assert second_step(client, code_at(secret, 0)).status_code == 401  # the old key is gone: nothing opens it
    rotated = make_app(MFA_REQUIRED="none", SECRET_KEY="n" * 40, SECRET_KEYS="2025:" + "k" * 40)
    client = half_signed_in(rotated, "staff")
    assert second_step(client, code_at(secret, 0)).status_code == 302
    # Accepting the code resealed the secret under the new key: the old one can now be dropped.
    client = half_signed_in(dropped, "staff")
    assert second_step(client, code_at(secret, 1)).status_code == 302


# --- passkeys over HTTP (the browser test registers and uses a real one) --------------------------------


def test_passkey_challenges_name_the_public_address_and_a_forged_answer_counts_as_a_failure(make_app, users):
    app = make_app(MFA_REQUIRED="none", PUBLIC_BASE_URL="https://ops.example.com/gw")
    client = app.test_client()
    seed_session(app, client, users["staff"].id)
    csrf = csrf_token_from(client.get("/account/mfa").get_data(as_text=True))
    options = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}).get_json()
    assert options["rp"] == {"id": "ops.example.com", "name": "Ops Gateway"}  # never the request's Host
    assert options["user"]["name"] == "staff" and len(options["challenge"]) >= 43
    forged = post_form(client, "/account/mfa", "/account/mfa/passkeys", {"name": "k", "credential": '{"id": "x"}'})
    assert forged.status_code == 400 and "could not be verified" in forged.get_data(as_text=True)
    replayed = post_form(client, "/account/mfa", "/account/mfa/passkeys", {"name": "k", "credential": '{"id": "x"}'})
    assert "expired" in replayed.get_data(as_text=True)  # a challenge answers one ceremony

    secret, _ = enrol(app, users["staff"].id)
    half = half_signed_in(app, "staff")
    csrf = csrf_token_from(half.get("/login/mfa").get_data(as_text=True))
    assert half.post("/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).status_code == 404  # has none
    refused = post_form(half, "/login/mfa", "/login/mfa/passkey", {"credential": '{"id": "x"}'})
    assert refused.status_code == 401 and "passkey was not accepted" in refused.get_data(as_text=True)
    assert events(app, "auth.mfa_failed")[-1].detail == {"method": "local", "factor": "passkey"}
    assert second_step(half, code_at(secret, 0)).status_code == 302
