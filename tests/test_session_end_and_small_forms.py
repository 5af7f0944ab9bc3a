"""The small things people meet at the edges (issue 22, item 10), over HTTP.

- A form sent after the session ended goes to sign-in saying so, and comes back to the form's
  page (the Referer, safe-URL checked) once signed in again; nothing the form asked is done.
  Signed in with a forged token, a script's request and the invite forms keep the 400.
- A locked name is told how long the lock lasts.
- The invite page learns whose password it sets from a POST carrying the link's token (the
  username and nothing else; refused links audited; the invite form's rate-limit bucket),
  and the sign-in form shows that name once the password is set.
- The run form: no "(none)" choice when a default exists; integer bounds written without ".0".
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from gateway.db.models import AuditEvent, Run
from gateway.db.units import write_transaction
from gateway.identity import accounts, sessions
from gateway.platform.extensions import db
from tests import test_web_pages as web_pages
from tests.conftest import PASSWORDS, csrf_token_from
from tests.test_invites import NEW_PASSWORD, create_invited

# The staff web UI tests' fixtures, by name: the app with their catalogue (greet has a default choice and
# an integer between 1 and 5), staff signed in and granted.
app, staff = web_pages.app, web_pages.staff
SESSION_ENDED = "Your session ended; sign in again."


def end_sessions(app, name: str) -> None:
    with app.app_context(), write_transaction():
        sessions.revoke_all_for(accounts.get_user(name).id)


def runs_started(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(Run.id)).all())


def test_a_form_sent_after_the_session_ended_goes_to_sign_in_and_back_to_its_page(app, staff):
    form_page = "/commands/greet?who=Ann"
    token = csrf_token_from(staff.get(form_page).get_data(as_text=True))
    end_sessions(app, "staff")  # idle timeout, sign-out elsewhere: the record is gone, the tab is still open
    response = staff.post(
        "/commands/greet",
        data={"csrf_token": token, "who": "Ann"},
        headers={"Referer": f"http://localhost{form_page}"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/commands/greet?who%3DAnn"
    assert runs_started(app) == 0
    login_page = staff.get(response.headers["Location"]).get_data(as_text=True)
    assert SESSION_ENDED in login_page
    assert 'name="next" value="/commands/greet?who=Ann"' in login_page
    signed_in = staff.post(
        "/login",
        data={
            "username": "staff",
            "password": PASSWORDS["staff"],
            "next": "/commands/greet?who=Ann",
            "csrf_token": csrf_token_from(login_page),
        },
    )
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/commands/greet?who=Ann"


def test_a_form_whose_token_went_with_the_session_goes_to_sign_in_not_a_400(app, users):
    client = app.test_client()  # no session at all: the CSRF token is missing, as after the cookie expired
    response = client.post(
        "/admin/permissions",
        data={"csrf_token": "from-the-old-session", "group": "ops"},
        headers={"Referer": "http://localhost/admin/permissions"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admin/permissions"
    assert SESSION_ENDED in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize(
    "referer",
    ["http://evil.example/admin/users", "http://localhost//evil.example/x", "javascript:alert(1)", None],
)
def test_the_page_to_return_to_is_only_ever_this_sites(app, users, referer):
    client = app.test_client()
    headers = {"Referer": referer} if referer else {}
    response = client.post("/admin/users", data={"username": "x"}, headers=headers)
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/"


def test_signed_in_with_a_forged_token_or_from_a_script_is_still_a_400(app, staff):
    assert staff.post("/commands/greet", data={"csrf_token": "forged", "who": "Ann"}).status_code == 400
    anonymous = app.test_client()
    fetched = anonymous.post("/commands/greet", data={"who": "Ann"}, headers={"X-CSRFToken": "gone"})
    assert fetched.status_code == 400
    invite = anonymous.post("/invite", data={"code": "x", "password": "p" * 14, "password_confirm": "p" * 14})
    assert invite.status_code == 400  # an invited person has no account to sign in to yet
    assert runs_started(app) == 0


def test_a_locked_name_is_told_how_long(make_app, users):
    app = make_app(LOGIN_MAX_ATTEMPTS=2, LOGIN_LOCK_SECONDS=240)
    client = app.test_client()

    def attempt(password: str) -> str:
        token = csrf_token_from(client.get("/login").get_data(as_text=True))
        return client.post("/login", data={"username": "staff", "password": password, "csrf_token": token}).get_data(
            as_text=True
        )

    attempt("wrong-password-1")
    attempt("wrong-password-1")
    assert "Try again in 4 minutes." in attempt(PASSWORDS["staff"])


def name_lookup(client, code: str, **kwargs):
    token = csrf_token_from(client.get("/invite").get_data(as_text=True))
    return client.post("/invite/name", data={"code": code}, headers={"X-CSRFToken": token}, **kwargs)


def invite_failures(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.outcome).where(AuditEvent.event == "auth.invite_failed")))


@pytest.mark.both_engines
def test_the_invite_page_learns_the_username_and_sign_in_shows_it(app, login):
    admin = login("admin")
    code = create_invited(admin, "newbie")
    visitor = app.test_client()
    answer = name_lookup(visitor, code)
    assert answer.status_code == 200 and answer.get_json() == {"username": "newbie"}
    # The form still works as before; afterwards the sign-in form has the name filled in.
    page = visitor.get("/invite").get_data(as_text=True)
    assert 'id="invite-for"' in page and "/invite/name" in page
    done = visitor.post(
        "/invite",
        data={
            "code": code,
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "csrf_token": csrf_token_from(page),
        },
    )
    assert done.status_code == 303
    login_page = visitor.get("/login").get_data(as_text=True)
    assert re.search(r'<input[^>]*id="username"[^>]*value="newbie"', login_page)
    assert not re.search(r'value="newbie"', visitor.get("/login").get_data(as_text=True))  # once only
    # The same link once used: refused with the form's message, audited like the form's refusal.
    used = name_lookup(visitor, code)
    assert used.status_code == 400 and "already used" in used.get_json()["error"]
    assert set(used.get_json()) == {"error"}
    assert invite_failures(app)[-1] == "used"


@pytest.mark.both_engines
def test_a_forged_invite_token_reveals_nothing_and_is_audited(app, users):
    client = app.test_client()
    answer = name_lookup(client, "forged-token-" + "x" * 30)
    assert answer.status_code == 400 and set(answer.get_json()) == {"error"}
    assert "not valid" in answer.get_json()["error"]
    assert invite_failures(app) == ["invalid"]
    # Without the CSRF header it is refused before any lookup.
    assert client.post("/invite/name", data={"code": "x"}).status_code == 400
    assert invite_failures(app) == ["invalid"]


def test_the_name_lookup_counts_in_the_invite_forms_rate_limit(make_app, users):
    app = make_app(LOGIN_RATE_LIMIT="3/minute")
    client = app.test_client()
    assert [name_lookup(client, "nope").status_code for _ in range(3)] == [400, 400, 400]
    assert name_lookup(client, "nope").status_code == 429
    token = csrf_token_from(client.get("/invite").get_data(as_text=True))
    form = client.post("/invite", data={"code": "x", "password": "p", "password_confirm": "p", "csrf_token": token})
    assert form.status_code == 429  # one bucket for the form and the lookup


def test_the_run_form_offers_no_none_when_a_default_exists_and_writes_integer_bounds_plainly(app, staff):
    html = staff.get("/commands/greet").get_data(as_text=True)
    mode = re.search(r'<select id="param-mode".*?</select>', html, re.S).group(0)
    assert "(none)" not in mode and 'value="fast" selected' in mode
    assert "A whole number between 1 and 5." in html
    assert 'min="1"' in html and 'max="5"' in html
    assert not re.search(r"\b[15]\.0\b", html)
    token = csrf_token_from(html)
    refused = staff.post("/commands/greet", data={"csrf_token": token, "who": "Ann", "count": "9"})
    assert refused.status_code == 400
    assert "must be at most 5" in refused.get_data(as_text=True)
    assert "5.0" not in refused.get_data(as_text=True)


@pytest.mark.parametrize("code", ["a\x00b", "x" * 10_240, "\udcff", "../../etc/passwd", ""])
def test_hostile_invite_tokens_are_refused_never_a_500(app, users, code):
    client = app.test_client()
    token = csrf_token_from(client.get("/invite").get_data(as_text=True))
    body = f"code={code}".encode("utf-8", "surrogateescape")
    answer = client.post(
        "/invite/name",
        data=body,
        headers={"X-CSRFToken": token, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 400 and set(answer.get_json()) == {"error"}
