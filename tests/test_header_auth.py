"""Trusted header sign-in over real requests: who may send the headers, and what each request does to the session.

The Flask test client's ``environ_base={"REMOTE_ADDR": ...}`` is the TCP peer;
``X-Forwarded-For`` is whatever the caller wrote.  The proxy lives at
``10.9.0.5`` (inside ``AUTH_HEADER_TRUSTED_NETWORKS``); ``192.0.2.5`` is a client
the allowlist admits but that is no proxy.  The last test puts a real reverse
proxy (a thread with ``http.server``) in front of a served gateway.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server

from gateway.db.models import AuditEvent, User, UserSession
from gateway.identity import accounts, groups, idp_links, tokens
from gateway.platform.extensions import db
from tests.conftest import seed_session

PROXY = "10.9.0.5"
CLIENT = "192.0.2.5"
SETTINGS = {
    "AUTH_METHODS": "local,header",
    "AUTH_HEADER_TRUSTED_NETWORKS": "10.9.0.0/24",
    "AUTH_HEADER_GROUPS": "X-Forwarded-Groups",
    "ALLOWED_NETWORKS": "127.0.0.0/8,10.0.0.0/8,192.0.2.0/24",
}
OPERATOR = {"id": None, "name": "cli:test"}


@pytest.fixture
def header_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(**SETTINGS)


def via_proxy(client: FlaskClient, path: str, user: str | None, groups: str | None = None, **kwargs: Any):
    headers = dict(kwargs.pop("headers", {}))
    if user is not None:
        headers["X-Forwarded-User"] = user
    if groups is not None:
        headers["X-Forwarded-Groups"] = groups
    method = kwargs.pop("method", "GET")
    return client.open(path, method=method, headers=headers, environ_base={"REMOTE_ADDR": PROXY}, **kwargs)


def ledger(app: Flask, *names: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event.in_(names)).order_by(AuditEvent.seq))
        return list(rows)


def signed_in_as(response) -> str | None:
    """The name the page's header shows for the signed-in user, or None on any other page."""
    text = response.get_data(as_text=True)
    start = text.find('<span class="who">')
    return text[start + 18 : text.index("</span>", start)] if start >= 0 else None


def user_named(app: Flask, name: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == name))
        if user is not None:
            db.session.expunge(user)
        return user


def live_sessions(app: Flask, name: str) -> list[UserSession]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(UserSession).join(User).where(User.username == name, UserSession.revoked_at.is_(None))
            )
        )


# --- from the trusted proxy -------------------------------------------------------------


def test_the_proxy_signs_a_new_user_in_once_and_later_requests_ride_the_session(header_app):
    client = header_app.test_client()
    first = via_proxy(client, "/", "Alice@Example.com")
    assert first.status_code == 200 and signed_in_as(first) == "alice@example.com"
    user = user_named(header_app, "alice@example.com")
    assert user is not None and (user.source, user.idp_issuer, user.password_hash) == ("header", "header", None)
    for _ in range(3):
        assert signed_in_as(via_proxy(client, "/runs", "alice@example.com")) == "alice@example.com"
    logins = ledger(header_app, "auth.login")
    assert [event.detail["method"] for event in logins] == ["header"]  # one sign-in, not one per request
    [record] = live_sessions(header_app, "alice@example.com")
    assert record.method == "header" and record.source_ip == PROXY
    # /login has nothing to offer a signed-in header user: it sends them on.
    assert via_proxy(client, "/login", "alice@example.com").status_code == 302


def test_a_different_header_user_ends_the_first_session(header_app):
    client = header_app.test_client()
    assert signed_in_as(via_proxy(client, "/", "alice")) == "alice"
    assert signed_in_as(via_proxy(client, "/", "bob")) == "bob"
    assert live_sessions(header_app, "alice") == [] and len(live_sessions(header_app, "bob")) == 1
    [ended] = ledger(header_app, "auth.logout")
    assert ended.actor_name == "alice" and ended.detail == {"method": "header", "reason": "header_user_changed"}


def test_a_local_session_is_replaced_by_the_proxys_user(header_app, users):
    client = header_app.test_client()
    seed_session(header_app, client, users["staff"].id)
    assert signed_in_as(client.get("/", environ_base={"REMOTE_ADDR": PROXY})) == "staff"
    assert signed_in_as(via_proxy(client, "/", "carol")) == "carol"
    assert live_sessions(header_app, "staff") == []


def test_a_header_session_that_arrives_without_the_header_ends(header_app):
    client = header_app.test_client()
    assert signed_in_as(via_proxy(client, "/", "alice")) == "alice"
    response = via_proxy(client, "/", None)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert live_sessions(header_app, "alice") == []
    assert ledger(header_app, "auth.logout")[-1].detail == {"method": "header", "reason": "header_missing"}
    assert via_proxy(client, "/", None).status_code == 302  # and it stays ended


def test_a_header_session_used_around_the_proxy_ends(header_app):
    client = header_app.test_client()
    assert signed_in_as(via_proxy(client, "/", "alice")) == "alice"
    response = client.get("/", environ_base={"REMOTE_ADDR": CLIENT})  # the cookie, straight at the gateway
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert live_sessions(header_app, "alice") == []
    assert ledger(header_app, "auth.logout")[-1].detail == {"method": "header", "reason": "not_through_proxy"}


def test_changed_groups_are_resynced_and_audited_hand_added_memberships_stay(header_app, users):
    with header_app.app_context():
        for name in ("ops", "dev", "audit"):
            groups.create_group(name)
        idp_links.link("ops", "/corp/Ops Team", actor=OPERATOR)
    client = header_app.test_client()
    assert signed_in_as(via_proxy(client, "/", "dana", groups="/corp/Ops Team, unknown")) == "dana"
    with header_app.app_context():
        groups.add_member("audit", "dana", actor=OPERATOR)
    assert ledger(header_app, "auth.login")[-1].detail == {"method": "header", "groups_added": ["ops"]}
    via_proxy(client, "/", "dana", groups="/corp/Ops Team, unknown")  # unchanged: nothing to do
    assert ledger(header_app, "auth.groups_synced") == []
    via_proxy(client, "/", "dana", groups="dev")
    [synced] = ledger(header_app, "auth.groups_synced")
    assert synced.actor_name == "dana"
    assert synced.detail == {"method": "header", "groups_added": ["dev"], "groups_removed": ["ops"]}
    with header_app.app_context():
        member_of = sorted(m.group.name for m in accounts.get_user("dana").memberships)
    assert member_of == ["audit", "dev"]
    assert len(ledger(header_app, "auth.login")) == 1  # re-synced within the session, not signed in again
    via_proxy(client, "/", "dana", groups=None)  # the groups header dropped: in no IdP group any more
    assert ledger(header_app, "auth.groups_synced")[-1].detail["groups_removed"] == ["dev"]


def test_a_disabled_header_user_is_refused_even_mid_session(header_app):
    client = header_app.test_client()
    assert signed_in_as(via_proxy(client, "/", "erin")) == "erin"
    with header_app.app_context():
        accounts.set_active(accounts.get_user("erin"), False, actor=OPERATOR)
    response = via_proxy(client, "/", "erin")
    assert response.status_code == 403 and "This account is disabled." in response.get_data(as_text=True)
    assert signed_in_as(response) is None
    failed = ledger(header_app, "auth.login_failed")[-1]
    assert (failed.outcome, failed.actor_name, failed.detail) == ("user_disabled", "erin", {"method": "header"})
    fresh = header_app.test_client()
    assert via_proxy(fresh, "/", "erin").status_code == 403


def test_a_name_held_by_a_local_account_is_refused(header_app, users):
    response = via_proxy(header_app.test_client(), "/", "Staff")
    assert response.status_code == 403
    assert "belongs to another account" in response.get_data(as_text=True)
    assert [(e.outcome, e.detail) for e in ledger(header_app, "auth.login_failed")] == [
        ("username_taken", {"method": "header"})
    ]
    staff = user_named(header_app, "staff")
    assert staff is not None and staff.source == "local" and not live_sessions(header_app, "staff")


def test_an_unusable_header_name_is_refused(header_app):
    response = via_proxy(header_app.test_client(), "/api/v1/commands", "ops/../admin")
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    assert ledger(header_app, "auth.login_failed")[-1].outcome == "no_username"
    assert user_named(header_app, "ops/../admin") is None


def test_a_bearer_token_wins_over_the_header_on_the_api(header_app, users):
    with header_app.app_context():
        issued = tokens.create_token(accounts.get_user("staff"), name="ci")
    client = header_app.test_client()
    response = via_proxy(client, "/api/v1/commands", "mallory", headers={"Authorization": f"Bearer {issued.secret}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert user_named(header_app, "mallory") is None and ledger(header_app, "auth.login") == []


# --- from anywhere else -----------------------------------------------------------------


def test_headers_from_an_untrusted_peer_are_refused_everywhere(header_app, users):
    client = header_app.test_client()
    outside = {"REMOTE_ADDR": CLIENT}
    page = client.get("/", headers={"X-Forwarded-User": "alice"}, environ_base=outside)
    assert page.status_code == 403 and "trusted sign-in proxy" in page.get_data(as_text=True)
    api = client.get("/api/v1/commands", headers={"X-Forwarded-Groups": "ops"}, environ_base=outside)
    assert api.status_code == 403 and api.get_json()["error"]["code"] == "forbidden"
    shell = client.post("/shell2http/echo", headers={"X-Forwarded-User": "alice"}, environ_base=outside)
    assert shell.status_code == 403 and "trusted sign-in proxy" in shell.get_json()["error"]
    with header_app.app_context():
        issued = tokens.create_token(accounts.get_user("staff"), name="ci")
    bearer = {"Authorization": f"Bearer {issued.secret}", "X-Forwarded-User": "staff"}
    assert client.get("/api/v1/commands", headers=bearer, environ_base=outside).status_code == 403
    denied = ledger(header_app, "access.denied_header")
    assert [(e.detail["path"], e.detail["headers"], e.detail["peer"]) for e in denied] == [
        ("/", ["X-Forwarded-User"], CLIENT),
        ("/api/v1/commands", ["X-Forwarded-Groups"], CLIENT),
        ("/shell2http/echo", ["X-Forwarded-User"], CLIENT),
        ("/api/v1/commands", ["X-Forwarded-User"], CLIENT),
    ]
    assert user_named(header_app, "alice") is None and ledger(header_app, "auth.login") == []
    # Without the headers the same peer is an ordinary client: the sign-in page, or its bearer token.
    assert client.get("/", environ_base=outside).status_code == 302
    del bearer["X-Forwarded-User"]
    assert client.get("/api/v1/commands", headers=bearer, environ_base=outside).status_code == 200


def test_a_forged_forwarded_for_naming_the_proxy_does_not_make_a_client_trusted(make_app):
    app = make_app(**SETTINGS, TRUSTED_PROXY_COUNT="1")
    client = app.test_client()
    forged = {"X-Forwarded-For": PROXY, "X-Forwarded-User": "alice"}
    response = client.get("/", headers=forged, environ_base={"REMOTE_ADDR": CLIENT})
    assert response.status_code == 403
    [denied] = ledger(app, "access.denied_header")
    assert (denied.source_ip, denied.detail["peer"]) == (PROXY, CLIENT)  # the claimed address, and the real peer
    assert user_named(app, "alice") is None
    # The real proxy, one hop, forwarding for the client: signed in, and the ledger names the client.
    real = {"X-Forwarded-For": CLIENT, "X-Forwarded-User": "alice"}
    assert signed_in_as(client.get("/", headers=real, environ_base={"REMOTE_ADDR": PROXY})) == "alice"
    assert ledger(app, "auth.login")[-1].source_ip == CLIENT


def test_refusals_of_untrusted_headers_are_flood_capped(make_app):
    app = make_app(**SETTINGS, AUDIT_FLOOD_PER_MINUTE="3")
    client = app.test_client()
    statuses = {
        client.get(f"/runs?n={n}", headers={"X-Forwarded-User": "x"}, environ_base={"REMOTE_ADDR": CLIENT}).status_code
        for n in range(12)
    }
    assert statuses == {403}
    assert len(ledger(app, "access.denied_header")) == 3


def test_without_header_mode_the_headers_mean_nothing(make_app, users):
    app = make_app(ALLOWED_NETWORKS=SETTINGS["ALLOWED_NETWORKS"])
    client = app.test_client()
    for address in (PROXY, CLIENT):
        response = client.get("/", headers={"X-Forwarded-User": "admin"}, environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert ledger(app, "access.denied_header", "auth.login") == []


# --- a real proxy in front of a served gateway ---------------------------------------------


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A reverse proxy that authenticated its user: it forwards from 127.0.0.2 with the identity headers."""

    upstream: tuple[str, int]
    user = "frank"

    def do_GET(self) -> None:
        connection = http.client.HTTPConnection(*self.upstream, timeout=10, source_address=("127.0.0.2", 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("x-forwarded-user", "host")}
        connection.request("GET", self.path, headers={**headers, "X-Forwarded-User": self.user})
        answer = connection.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(make_app: Callable[..., Flask]) -> Iterator[tuple[Flask, int, int]]:
    app = make_app(AUTH_METHODS="header", AUTH_HEADER_TRUSTED_NETWORKS="127.0.0.2/32")
    gateway = make_server("127.0.0.1", 0, app, threaded=True)
    handler = type("Proxy", (_Proxy,), {"upstream": ("127.0.0.1", gateway.server_port)})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in (gateway, proxy)]
    for thread in threads:
        thread.start()
    yield app, gateway.server_port, proxy.server_address[1]
    for server in (proxy, gateway):
        server.shutdown()
        server.server_close()


def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    answer = connection.getresponse()
    body = answer.read().decode()
    connection.close()
    return answer.status, body


def test_a_real_proxy_signs_its_user_in_and_a_direct_caller_cannot_pretend(served):
    app, gateway_port, proxy_port = served
    status, body = fetch(proxy_port, "/")
    assert status == 200 and '<span class="who">frank</span>' in body
    status, _ = fetch(gateway_port, "/", {"X-Forwarded-User": "frank"})  # straight at the gateway, from 127.0.0.1
    assert status == 403
    [denied] = ledger(app, "access.denied_header")
    assert denied.detail["peer"] == "127.0.0.1"
    assert [event.source_ip for event in ledger(app, "auth.login")] == ["127.0.0.2"]


def test_the_header_check_runs_right_after_the_allowlist_and_before_csrf_and_sign_in(header_app):
    from gateway.access.netguard import guard
    from gateway.identity import require_login
    from gateway.identity.header_auth import check_headers

    hooks = header_app.before_request_funcs[None]
    assert hooks[:2] == [guard, check_headers]
    csrf = next(i for i, hook in enumerate(hooks) if hook.__module__.startswith("flask_wtf"))
    assert 1 < csrf < hooks.index(require_login)


@pytest.mark.both_engines
def test_parallel_first_requests_of_one_user_make_one_account(header_app):
    """A browser's first page and its assets, or several tabs, reach the gateway at once before any cookie."""
    from concurrent.futures import ThreadPoolExecutor

    with header_app.app_context():
        groups.create_group("ops")

    def first_visit(_: int) -> int:
        return via_proxy(header_app.test_client(), "/", "zed", groups="ops").status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(first_visit, range(6)))
    assert statuses == [200] * 6
    with header_app.app_context():
        assert [m.group.name for m in accounts.get_user("zed").memberships] == ["ops"]
    assert len(live_sessions(header_app, "zed")) == 6
