"""The network allowlist: the first gate, over HTTP, with IPv4, IPv6, proxies and forged headers.

The Flask test client's ``environ_base={"REMOTE_ADDR": ...}`` plays the TCP
peer address; ``X-Forwarded-For`` is whatever the caller (or a proxy) sent.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from gateway.db.models import AuditEvent, UserSession
from gateway.db.units import write_transaction
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

DENIED = "192.0.2.10"  # TEST-NET-1: outside every list below unless a test allows it
ALLOWED = "127.0.0.1"
PROBES = ("/livez", "/healthz", "/readyz")


def get(client, path, address, **kwargs):
    return client.get(path, environ_base={"REMOTE_ADDR": address}, **kwargs)


def denial_events(app) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "access.denied_network").order_by(AuditEvent.seq)
        ).all()
        return [
            {"source_ip": row.source_ip, "detail": row.detail, "outcome": row.outcome, "actor": row.actor_id}
            for row in rows
        ]


def assert_allowed(response) -> None:
    assert response.status_code != 403, response.get_data(as_text=True)


# --- addresses --------------------------------------------------------------------------


def test_allowed_addresses_pass_and_others_are_refused(make_app):
    client = make_app(ALLOWED_NETWORKS="10.0.0.0/8, ::1/128, 2001:db8::/48").test_client()
    for address in ("10.1.2.3", "10.255.255.254", "::1", "2001:db8:0:1::5"):
        response = get(client, "/login", address)
        assert response.status_code == 200, address
        assert 'name="password"' in response.get_data(as_text=True)
    for address in ("11.0.0.1", "127.0.0.1", "::2", "2001:db8:1::5", "", "unknown", "10.0.0.1x"):
        assert get(client, "/login", address).status_code == 403, address


def test_ipv4_mapped_ipv6_is_treated_as_ipv4(make_app):
    client = make_app(ALLOWED_NETWORKS="192.0.2.0/24").test_client()
    assert get(client, "/login", "::ffff:192.0.2.7").status_code == 200
    assert get(client, "/login", "::ffff:198.51.100.7").status_code == 403
    loopback = make_app().test_client()
    assert get(loopback, "/login", "::ffff:127.0.0.1").status_code == 200


def test_ipv6_network(make_app):
    client = make_app(ALLOWED_NETWORKS="2001:db8::/32").test_client()
    assert get(client, "/login", "2001:db8::1").status_code == 200
    assert get(client, "/login", "2001:db8:ffff::1").status_code == 200
    assert get(client, "/login", "2001:db9::1").status_code == 403
    assert get(client, "/login", "127.0.0.1").status_code == 403


# --- what a refused caller sees ---------------------------------------------------------


def test_refusal_is_the_same_for_every_path_and_method(make_app):
    client = make_app().test_client()
    requests = [
        ("GET", "/"),
        ("GET", "/login"),
        ("GET", "/no-such-page"),
        ("GET", "/admin/users"),
        ("GET", "/api/v1/anything"),
        ("GET", "/api/v1/commands"),
        ("GET", "/static/gateway.css"),
        ("POST", "/login"),
        ("POST", "/logout"),
        ("POST", "/no-such-page"),
        ("POST", "/api/v1/commands/x/runs"),
        ("DELETE", "/"),
        ("OPTIONS", "/login"),
    ]
    answers = set()
    for method, path in requests:
        response = client.open(path, method=method, environ_base={"REMOTE_ADDR": DENIED})
        assert response.status_code == 403, (method, path)
        for header in ("Location", "Set-Cookie", "Allow", "WWW-Authenticate", "Retry-After"):
            assert header not in response.headers, (method, path, header)
        answers.add((response.mimetype, response.get_data(as_text=True)))
    assert len(answers) == 1, answers


def test_refusal_is_audited_and_nothing_else_runs(make_app):
    app = make_app()
    client = app.test_client()
    response = client.get("/login?next=/admin", environ_base={"REMOTE_ADDR": DENIED})
    assert response.status_code == 403
    assert "csrf_token" not in response.get_data(as_text=True)  # the sign-in form was never rendered
    assert "Set-Cookie" not in response.headers  # no session was started
    post = client.post("/login", data={"username": "admin", "password": "x"}, environ_base={"REMOTE_ADDR": DENIED})
    assert post.status_code == 403
    events = denial_events(app)
    assert [(event["source_ip"], event["detail"]["path"]) for event in events] == [
        (DENIED, "/login"),
        (DENIED, "/login"),
    ]
    assert [event["detail"]["method"] for event in events] == ["GET", "POST"]
    assert {event["outcome"] for event in events} == {"denied"}
    with app.app_context():
        failed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "auth.login_failed")).all()
    assert failed == []  # the password check never ran


def test_allowed_requests_are_not_audited_as_denials(make_app):
    app = make_app()
    assert app.test_client().get("/login").status_code == 200
    assert denial_events(app) == []


def test_denials_are_capped_per_minute(make_app):
    app = make_app(AUDIT_FLOOD_PER_MINUTE=2)
    client = app.test_client()
    for _ in range(10):
        assert get(client, "/", DENIED).status_code == 403
    # Two per minute; the requests may straddle one minute boundary, never more.
    assert 2 <= len(denial_events(app)) <= 4


def test_refused_request_with_a_session_cookie_does_not_extend_the_session(app, client, login):
    login("staff")
    assert client.get("/").status_code == 200
    earlier = utcnow() - timedelta(minutes=10)
    with app.app_context(), write_transaction() as tx:
        tx.execute(update(UserSession).values(last_seen_at=earlier))

    assert get(client, "/", DENIED).status_code == 403

    with app.app_context():
        seen = db.session.scalars(select(UserSession.last_seen_at)).all()
    assert seen and all(abs(value - earlier) < timedelta(seconds=1) for value in seen), seen


# --- X-Forwarded-For --------------------------------------------------------------------


def test_forged_forwarded_for_changes_nothing_without_trusted_proxies(make_app):
    app = make_app()
    client = app.test_client()
    forged = get(client, "/login", DENIED, headers={"X-Forwarded-For": "127.0.0.1"})
    assert forged.status_code == 403
    assert denial_events(app)[-1]["source_ip"] == DENIED
    local = get(client, "/login", ALLOWED, headers={"X-Forwarded-For": DENIED})
    assert local.status_code == 200


def test_one_trusted_proxy_uses_the_last_hop(make_app):
    proxy = "10.9.9.9"  # the proxy itself is not on the list
    app = make_app(ALLOWED_NETWORKS="192.0.2.0/24", TRUSTED_PROXY_COUNT=1)
    client = app.test_client()

    def through_proxy(forwarded_for: str):
        return get(client, "/login", proxy, headers={"X-Forwarded-For": forwarded_for})

    assert through_proxy("192.0.2.5").status_code == 200
    assert through_proxy("198.51.100.7").status_code == 403
    assert denial_events(app)[-1]["source_ip"] == "198.51.100.7"
    # The client wrote "192.0.2.5" itself; the proxy appended the real address: refused.
    assert through_proxy("192.0.2.5, 198.51.100.7").status_code == 403
    assert denial_events(app)[-1]["source_ip"] == "198.51.100.7"
    assert through_proxy("198.51.100.7, 192.0.2.5").status_code == 200
    # Without the header the peer is the proxy, which is not allowed.
    assert get(client, "/login", proxy).status_code == 403


def test_two_trusted_proxies_use_the_second_to_last_hop(make_app):
    client = make_app(ALLOWED_NETWORKS="192.0.2.0/24", TRUSTED_PROXY_COUNT=2).test_client()
    headers = {"X-Forwarded-For": "198.51.100.7, 192.0.2.5, 10.0.0.2"}
    assert get(client, "/login", "10.0.0.1", headers=headers).status_code == 200
    headers = {"X-Forwarded-For": "192.0.2.5, 198.51.100.7, 10.0.0.2"}
    assert get(client, "/login", "10.0.0.1", headers=headers).status_code == 403


# --- probes have their own list ---------------------------------------------------------


def test_probes_are_reachable_from_addresses_the_app_refuses(make_app):
    client = make_app().test_client()
    assert get(client, "/login", DENIED).status_code == 403
    for path in PROBES:
        response = get(client, path, DENIED)
        assert response.status_code == 200, path
        assert response.mimetype == "application/health+json"


def test_probes_can_be_refused_by_their_own_list(make_app):
    app = make_app(HEALTH_ALLOWED_NETWORKS="10.0.0.0/8")
    client = app.test_client()
    for path in PROBES:
        assert get(client, path, DENIED).status_code == 403, path
        assert get(client, path, ALLOWED).status_code == 403, path  # the app's own list does not apply
        assert get(client, path, "10.1.1.1").status_code == 200, path
    assert get(client, "/login", "10.1.1.1").status_code == 403
    assert [event["detail"]["path"] for event in denial_events(app)] == [*(p for p in PROBES for _ in (1, 2)), "/login"]
