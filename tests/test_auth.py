"""Sign-in over HTTP: credentials, username normalisation, no account enumeration, ``next``, CSRF, audit, bad input."""

from __future__ import annotations

import re
import statistics
import time
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy import select

from gateway.db.models import AuditEvent, UserSession
from gateway.identity import accounts
from gateway.identity.views import INVALID_MESSAGE
from gateway.platform.extensions import db
from tests.conftest import PASSWORDS, csrf_token_from, login_response

FORM = "application/x-www-form-urlencoded"


def signed_in(client) -> bool:
    """The dashboard answers 200 only to a signed-in client; anonymous clients are sent to /login."""
    response = client.get("/")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def login_token(client) -> str:
    return csrf_token_from(client.get("/login").get_data(as_text=True))


def comparable(html: str) -> str:
    """A page with its CSRF token and every form value blanked (echoed username) so two answers can be compared."""
    return re.sub(r'value="[^"]*"', 'value=""', html.replace(csrf_token_from(html), "TOKEN"))


def audit_rows(app, event: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.seq)))


# --- success, failure, normalisation ---------------------------------------------------------


def test_correct_password_signs_in_and_shows_the_dashboard(client, users):
    response = login_response(client, "staff", PASSWORDS["staff"])
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "staff" in page.get_data(as_text=True)


def test_wrong_password_is_refused_with_the_login_page(client, users):
    response = login_response(client, "staff", "not-the-password-1")
    assert response.status_code == 401
    body = response.get_data(as_text=True)
    assert INVALID_MESSAGE in body
    assert 'name="password"' in body
    assert not signed_in(client)


def test_password_of_another_user_is_refused(client, users):
    response = login_response(client, "staff", PASSWORDS["admin"])
    assert response.status_code == 401
    assert not signed_in(client)


def test_username_spellings_sign_in_to_the_one_account(app, users):
    for spelling in ["admin", "ADMIN", "Admin", "\uff21\uff44\uff4d\uff49\uff4e", " admin ", "admin\n"]:
        client = app.test_client()
        response = login_response(client, spelling, PASSWORDS["admin"])
        assert response.status_code == 302, spelling
        assert "admin" in client.get("/").get_data(as_text=True)
    with app.app_context():
        records = db.session.scalars(select(UserSession).where(UserSession.revoked_at.is_(None))).all()
    assert {record.user_id for record in records} == {users["admin"].id}
    assert len(records) == 6


def test_password_is_case_sensitive(client, users):
    response = login_response(client, "admin", PASSWORDS["admin"].upper())
    assert response.status_code == 401
    assert not signed_in(client)


def test_disabled_account_gets_the_same_answer_as_a_wrong_password(client, users, app):

    with app.app_context():
        accounts.set_active(accounts.get_user("other"), False)
    disabled = login_response(client, "other", PASSWORDS["other"])
    wrong = login_response(client, "other", "wrong-password-99")
    assert disabled.status_code == wrong.status_code == 401
    assert comparable(disabled.get_data(as_text=True)) == comparable(wrong.get_data(as_text=True))
    assert not signed_in(client)


# --- no account enumeration -----------------------------------------------------------------


def test_unknown_user_and_wrong_password_get_the_same_answer(client, users):
    unknown = login_response(client, "nobody-here", "wrong-password-99")
    wrong = login_response(client, "admin", "wrong-password-99")
    assert unknown.status_code == wrong.status_code == 401
    assert INVALID_MESSAGE in unknown.get_data(as_text=True)
    assert comparable(unknown.get_data(as_text=True)) == comparable(wrong.get_data(as_text=True))
    assert sorted(unknown.headers.keys()) == sorted(wrong.headers.keys())


def _timed_post(client, token: str, username: str) -> float:
    started = time.perf_counter()
    response = client.post("/login", data={"username": username, "password": "wrong-password-99", "csrf_token": token})
    elapsed = time.perf_counter() - started
    assert response.status_code == 401
    return elapsed


def test_unknown_user_costs_a_password_verification_too(make_app, users):
    """Loose bound: an unknown name must not answer in a fraction of the time a wrong password takes."""
    app = make_app(LOGIN_MAX_ATTEMPTS=1000)
    client = app.test_client()
    token = login_token(client)
    _timed_post(client, token, "admin")  # warm-up: first queries, template compilation
    _timed_post(client, token, "nobody-warm")
    unknown, wrong = [], []
    for index in range(5):  # interleaved, so background load hits both series alike
        unknown.append(_timed_post(client, token, f"nobody-{index}"))
        wrong.append(_timed_post(client, token, "admin"))
    assert statistics.median(unknown) >= 0.3 * statistics.median(wrong), (unknown, wrong)


# --- next parameter --------------------------------------------------------------------------


def browser_destination(location: str) -> str:
    """Where a browser on http://localhost/login goes for ``location`` (WHATWG quirks that matter here)."""
    cleaned = location.lstrip("".join(chr(c) for c in range(0x21)))
    cleaned = re.sub(r"[\t\n\r]", "", cleaned).replace("\\", "/")
    parts = urlsplit(cleaned)
    if parts.scheme and parts.scheme not in ("http", "https"):
        return parts.scheme + ":"
    if parts.scheme or parts.netloc:
        return parts.netloc or cleaned
    return "localhost"


@pytest.mark.parametrize("target", ["/account", "/runs?status=failed&limit=5", "/commands/disk-usage"])
def test_same_origin_next_is_followed(client, users, target):
    response = login_response(client, "staff", PASSWORDS["staff"], next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == target


def test_next_from_the_query_string_survives_the_form_round_trip(client, users):
    assert client.get("/account").headers["Location"] == "/login?next=/account"
    page = client.get("/login?next=/account").get_data(as_text=True)
    assert 'name="next" value="/account"' in page
    token = csrf_token_from(page)
    response = client.post(
        "/login",
        data={"username": "staff", "password": PASSWORDS["staff"], "csrf_token": token, "next": "/account"},
    )
    assert response.headers["Location"] == "/account"


OPEN_REDIRECTS = [
    "https://evil.example/",
    "http://evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    " //evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https:evil.example",
    "evil.example",
    "/" + "a" * 5000,
]


# The payloads named in the issue go through a real sign-in each; all of them through the signed-in GET.
SIGN_IN_REDIRECTS = [
    "https://evil.example/",
    "//evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "javascript:alert(1)",
]


def test_foreign_or_odd_next_after_sign_in_lands_on_the_dashboard(app, users):
    for target in SIGN_IN_REDIRECTS:
        response = login_response(app.test_client(), "staff", PASSWORDS["staff"], next=target)
        assert response.status_code == 302, target
        assert response.headers["Location"] == "/", target


def test_foreign_or_odd_next_when_signed_in_lands_on_the_dashboard(client, login):
    login("staff")
    for target in OPEN_REDIRECTS:
        response = client.get("/login", query_string={"next": target})
        assert response.status_code == 302, repr(target)
        assert response.headers["Location"] == "/", repr(target)


def test_foreign_next_in_the_query_string_is_not_rendered(client, users):
    for target in ["//evil.example", "/\\evil.example", "javascript:alert(1)", "https://evil.example"]:
        page = client.get("/login?next=" + quote(target, safe="")).get_data(as_text=True)
        assert 'name="next" value="/"' in page, target
        assert "evil" not in page and "javascript" not in page, target


def test_percent_encoded_slashes_in_the_query_string_land_on_the_dashboard(client, login):
    """``?next=/%5Cevil`` decodes to ``/\\evil``, which a browser treats as ``//evil``."""
    login("staff")
    for raw_query in ["/%5Cevil.example", "/%5C%5Cevil.example", "%2F%2Fevil.example", "%2F%09%2Fevil.example"]:
        response = client.get("/login?next=" + raw_query)
        assert response.headers["Location"] == "/", raw_query


def test_percent_encoded_paths_stay_on_this_origin(client, login):
    """A path that still holds %5C after decoding is a same-origin path to a browser (it never decodes it)."""
    login("staff")
    for target in ["/%5Cevil.example", "/%2F%2Fevil.example", "/%09/evil.example", "/caf\u00e9"]:
        response = client.get("/login", query_string={"next": target})
        assert response.status_code == 302, target
        location = response.headers["Location"]
        assert location.startswith("/") and not location.startswith("//"), location
        assert browser_destination(location) == "localhost", location


def test_browser_destination_helper_sees_the_quirks():
    """The helper above must itself recognise the tricks it is used to rule out."""
    assert browser_destination("/\\evil.example") == "evil.example"
    assert browser_destination("/\t/evil.example") == "evil.example"
    assert browser_destination("javascript:alert(1)") == "javascript:"
    assert browser_destination("/%5Cevil.example") == "localhost"


# --- CSRF ------------------------------------------------------------------------------------


def test_login_without_a_valid_csrf_token_is_rejected(client, users, app):
    client.get("/login")
    for token in [None, "", "not-a-token", "IjAxMjM0NTY3ODki.Zz.bad-signature"]:
        data = {"username": "admin", "password": PASSWORDS["admin"]}
        if token is not None:
            data["csrf_token"] = token
        response = client.post("/login", data=data)
        # Refused: back to a fresh sign-in form that says why (not a bare 400), nobody signed in.
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), token
        assert not signed_in(client)
    assert "The sign-in form expired; sign in again." in client.get("/login").get_data(as_text=True)
    assert audit_rows(app, "auth.login") == []


def test_login_with_a_token_from_another_session_is_rejected(app, users):
    token = login_token(app.test_client())
    victim = app.test_client()
    victim.get("/login")
    response = victim.post("/login", data={"username": "admin", "password": PASSWORDS["admin"], "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert not signed_in(victim)


def logout_token(client) -> str:
    return csrf_token_from(client.get("/").get_data(as_text=True))


def test_logout_without_a_valid_csrf_token_is_rejected(client, login, app):
    login("staff")
    for token in [None, "", "forged-token"]:
        data = {} if token is None else {"csrf_token": token}
        response = client.post("/logout", data=data)
        assert response.status_code == 400, token
        assert signed_in(client)
    assert audit_rows(app, "auth.logout") == []


def test_logout_with_the_page_token_signs_out(client, login):
    login("staff")
    response = client.post("/logout", data={"csrf_token": logout_token(client)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert not signed_in(client)


# --- audit -----------------------------------------------------------------------------------


def test_sign_in_and_out_are_audited_with_actor_and_address(client, users, app):
    token = login_token(client)
    response = client.post(
        "/login",
        data={"username": "Staff", "password": PASSWORDS["staff"], "csrf_token": token},
        headers={"User-Agent": "pytest-browser/1.0"},
    )
    assert response.status_code == 302
    [login_event] = audit_rows(app, "auth.login")
    assert (login_event.actor_id, login_event.actor_name) == (users["staff"].id, "staff")
    assert login_event.source_ip == "127.0.0.1"
    assert login_event.user_agent == "pytest-browser/1.0"
    assert login_event.outcome == "ok"

    client.post("/logout", data={"csrf_token": logout_token(client)})
    [logout_event] = audit_rows(app, "auth.logout")
    assert (logout_event.actor_id, logout_event.actor_name) == (users["staff"].id, "staff")
    assert logout_event.source_ip == "127.0.0.1"
    assert logout_event.seq > login_event.seq


def test_failed_sign_in_is_audited_without_the_password(client, users, app):
    login_response(client, "admin", "Wr0ng-Secret-Guess!")
    [failed] = audit_rows(app, "auth.login_failed")
    assert failed.actor_name == "admin"
    assert failed.source_ip == "127.0.0.1"
    assert audit_rows(app, "auth.login") == []
    with app.app_context():
        rows = db.session.execute(select(AuditEvent)).scalars().all()
        dump = " ".join(str(getattr(row, column.key)) for row in rows for column in AuditEvent.__table__.columns)
    assert "Wr0ng-Secret-Guess!" not in dump


# --- garbage in the form ---------------------------------------------------------------------


def assert_login_page(response, case: object) -> None:
    assert response.status_code in (400, 401), (case, response.status_code)
    body = response.get_data(as_text=True)
    assert "<h1>Sign in</h1>" in body
    assert 'name="password"' in body


MISSING_FIELDS = [
    {},
    {"username": "admin"},
    {"password": "whatever-password"},
    {"username": "", "password": ""},
    {"username": "   ", "password": "whatever-password"},
]


def test_missing_fields_get_the_login_page(client, users):
    for fields in MISSING_FIELDS:
        response = client.post("/login", data={**fields, "csrf_token": login_token(client)})
        assert_login_page(response, fields)
    assert not signed_in(client)


ODD_CREDENTIALS = [
    ("a" * 10_000, "whatever-password"),
    ("admin", "p" * 10_000),
    ("ad\x00min", "whatever-password"),
    ("\x00", "\x00"),
    ("admin", PASSWORDS["admin"] + "\x00"),
    ("\ufdfa" * 150, "whatever-password"),  # NFKC expands each character to 18
    ("\u0130" * 150, "whatever-password"),  # casefold expands too
    ("adm\u200bin", "whatever-password"),
    ("admin\r\nX-Injected: 1", "whatever-password"),
    ("\u202eadmin", "whatever-password"),
]


def test_odd_credentials_get_the_login_page(client, users):
    for username, password in ODD_CREDENTIALS:
        response = client.post(
            "/login", data={"username": username, "password": password, "csrf_token": login_token(client)}
        )
        assert_login_page(response, (username[:20], password[:20]))
    assert not signed_in(client)


UNDECODABLE_BODIES = [
    "username=%FF%FE&password=%C3%28",
    "username=admin&password=%ff" + PASSWORDS["admin"],
    "username=%E0%80%80&password=x",
    "username=%ED%A0%80&password=x",  # an encoded UTF-16 surrogate
    "username=%&password=%%%",
    "username=admin&username=staff&password=x",
]


def test_undecodable_form_bodies_get_the_login_page(client, users):
    for body in UNDECODABLE_BODIES:
        token = login_token(client)
        response = client.post("/login", data=f"{body}&csrf_token={token}".encode("latin-1"), content_type=FORM)
        assert_login_page(response, body)
    assert not signed_in(client)


JSON_BODIES = [
    b'{"username": "admin", "password": 12345}',
    b'{"username": {"name": "admin"}, "password": "x"}',
    b'{"username": ["admin"], "password": ["x"]}',
    b'{"username": null, "password": null}',
    b"[1, 2, 3]",
    b'"admin"',
    b"42",
    b"{not json",
    b'{"username": "admin", "password": "' + PASSWORDS["admin"].encode() + b'"}',
]


def test_json_bodies_get_a_400_and_do_not_sign_in(client, users):
    """The sign-in form is a browser form: a JSON body is not a way in, and never a 500."""
    for payload in JSON_BODIES:
        token = login_token(client)
        response = client.post("/login", data=payload, content_type="application/json", headers={"X-CSRFToken": token})
        assert response.status_code == 400, (payload, response.status_code)
        assert not signed_in(client), payload


def test_json_body_on_logout_is_not_a_500(client, login):
    login("staff")
    token = logout_token(client)
    for payload in [b"[1, 2]", b"42", b"{}"]:
        response = client.post("/logout", data=payload, content_type="application/json", headers={"X-CSRFToken": token})
        assert response.status_code in (302, 400), payload
