"""The route sweep: every rule of the URL map and every method it allows, checked from the outside.

A route added tomorrow is swept too: from a refused address it must answer the
gate's bare 403; anonymous it must send the caller to sign-in (browser) or
answer 401 with the JSON error shape (API); staff never reach /admin; probes
follow their own allowlist and leak nothing.  The public endpoints are listed
here, explicitly, so a new unprotected route fails this file.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket

import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.routing import Rule

from gateway.access import netguard
from gateway.db.models import AuditEvent
from gateway.identity import groups
from gateway.platform.extensions import db
from tests.conftest import TEST_AUDIT_KEY, TEST_SECRET_KEY, csrf_token_from, login_response, sample_value

pytestmark = pytest.mark.both_engines  # the hostile-input route sweep: every route against each engine

# Everything else needs a signed-in user. Adding to this set is a security review, not a refactor.
PUBLIC_ENDPOINTS = frozenset(
    {
        "auth.login", "auth.invite", "auth.invite_name", "auth.oidc_login", "auth.oidc_callback", "i18n.set_language",
        "static", "health.livez", "health.healthz", "health.readyz", "health.metrics",
    }
)  # fmt: skip
HEALTH_ENDPOINTS = frozenset({"health.livez", "health.healthz", "health.readyz", "health.metrics"})
OUTSIDE = {"REMOTE_ADDR": "10.66.0.1"}
LOOPBACK = "127.0.0.0/8,::1/128"
SAMPLES = {"filename": "app.css", "fmt": "csv"}


def sample_url(app: Flask, rule: Rule) -> str:
    """The rule's URL with plausible values for its variables (ints 1, names ``x``)."""
    values = {name: sample_value(rule, name, SAMPLES.get(name, "x")) for name in rule.arguments}
    with app.test_request_context():
        _, path = rule.build(values)
    return path


def sweep(app: Flask) -> list[tuple[str, str, str]]:
    """(method, url, endpoint) for every rule and every method it allows, HEAD and OPTIONS aside."""
    calls = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        url = sample_url(app, rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            calls.append((method, url, rule.endpoint))
    assert len(calls) >= 50, "the sweep found fewer routes than exist: is it still walking the right map?"
    return calls


def is_api(url: str) -> bool:
    return url.startswith(("/api/", "/shell2http/"))


def anonymous_problem(client: FlaskClient, method: str, url: str, csrf: str) -> str | None:
    """Why this anonymous request was not refused the right way, or None when it was."""
    data = {"csrf_token": csrf} if method == "POST" and not is_api(url) else None
    response = client.open(url, method=method, data=data)
    if is_api(url):
        body = response.get_json(silent=True) or {}
        if response.status_code != 401:
            return f"{method} {url} -> {response.status_code}, want 401"
        if body.get("error", {}).get("code") != "unauthorized" or set(body["error"]) != {"code", "message", "details"}:
            return f"{method} {url} -> 401 without the JSON error shape: {body}"
        if not response.headers.get("WWW-Authenticate", "").startswith("Bearer"):
            return f"{method} {url} -> 401 without WWW-Authenticate"
        return None
    if response.status_code != 302 or not response.headers["Location"].startswith("/login"):
        return f"{method} {url} -> {response.status_code} {response.headers.get('Location')}, want redirect to /login"
    return None


def unprotected_routes(app: Flask) -> list[str]:
    """The sweep's check: every non-public route refuses an anonymous caller."""
    client = app.test_client()
    csrf = csrf_token_from(client.get("/login").get_data(as_text=True))
    problems = []
    for method, url, endpoint in sweep(app):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        problem = anonymous_problem(client, method, url, csrf)
        if problem:
            problems.append(f"{endpoint}: {problem}")
    return problems


def events(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


# --- network allowlist ----------------------------------------------------------------------


def test_refused_address_gets_the_bare_403_on_every_route_even_with_an_admin_session(make_app, users):
    app = make_app(ALLOWED_NETWORKS=LOOPBACK, HEALTH_ALLOWED_NETWORKS=LOOPBACK)
    client = app.test_client()
    assert login_response(client, "admin", users["admin"].password).status_code == 302
    csrf = csrf_token_from(client.get("/account").get_data(as_text=True))
    before = events(app)[-1].seq
    for method, url, _ in sweep(app):
        data = {"csrf_token": csrf, "username": "x", "password": "y"} if method == "POST" else None
        response = client.open(url, method=method, data=data, environ_base=OUTSIDE)
        assert response.status_code == 403, f"{method} {url} from outside -> {response.status_code}"
        assert response.get_data(as_text=True) == "Forbidden\n", f"{method} {url}: a handler answered"
        assert "Set-Cookie" not in response.headers, f"{method} {url}: the session was touched"
    # Nothing but network denials was written: no sign-in, no admin change, no run.
    assert {event.event for event in events(app) if event.seq > before} == {"access.denied_network"}
    assert client.get("/admin/users").status_code == 200  # from loopback the same session still works


def test_identity_headers_from_an_untrusted_peer_are_refused_on_every_route(make_app, users):
    """Header sign-in on: from a peer outside the proxies' list the headers are refused everywhere but the probes."""
    app = make_app(AUTH_METHODS="local,header", AUTH_HEADER_TRUSTED_NETWORKS="10.9.0.0/24")
    client = app.test_client()
    assert login_response(client, "admin", users["admin"].password).status_code == 302
    csrf = csrf_token_from(client.get("/account").get_data(as_text=True))
    before = events(app)[-1].seq
    for method, url, endpoint in sweep(app):
        data = {"csrf_token": csrf} if method == "POST" else None
        response = client.open(url, method=method, data=data, headers={"X-Forwarded-User": "admin"})
        if endpoint in HEALTH_ENDPOINTS:
            assert response.status_code in (200, 503), f"{method} {url} -> {response.status_code}"
            continue
        assert response.status_code == 403, f"{method} {url} with the user header -> {response.status_code}"
        assert "Set-Cookie" not in response.headers, f"{method} {url}: the session was touched"
    assert {event.event for event in events(app) if event.seq > before} <= {"access.denied_header", "audit.suppressed"}
    assert client.get("/admin/users").status_code == 200  # without the header the admin's session still works


def test_probes_follow_their_own_list(make_app):
    app = make_app(ALLOWED_NETWORKS=LOOPBACK, HEALTH_ALLOWED_NETWORKS="10.66.0.0/16")
    client = app.test_client()
    for path in ("/livez", "/healthz", "/readyz"):
        assert client.get(path, environ_base=OUTSIDE).status_code == 200, path
        assert client.get(path).status_code == 403, path  # loopback is not in the probes' list
    assert client.get("/login", environ_base=OUTSIDE).status_code == 403


# --- anonymous ------------------------------------------------------------------------------


def test_every_non_public_route_refuses_anonymous_callers(app):
    assert unprotected_routes(app) == []


def test_the_public_list_matches_what_the_app_serves(app):
    served = {endpoint for _, _, endpoint in sweep(app)}
    assert PUBLIC_ENDPOINTS - {"health.metrics"} <= served | {"static"}


def test_the_sweep_flags_a_new_unprotected_route(make_app, monkeypatch):
    from gateway import identity

    app = make_app()
    app.add_url_rule("/debug/env", "debug_env", lambda: dict(os.environ))
    assert unprotected_routes(app) == []  # the sign-in gate covers a plain new route
    # Someone exempts it from sign-in (the way a public endpoint is made): the sweep must notice.
    monkeypatch.setattr(identity, "PUBLIC_ENDPOINTS", identity.PUBLIC_ENDPOINTS | {"debug_env"})
    problems = unprotected_routes(app)
    assert len(problems) == 1 and problems[0].startswith("debug_env: GET /debug/env -> 200"), problems


def test_the_sweep_flags_a_new_unprotected_api_route(make_app, monkeypatch):
    from gateway import identity

    app = make_app()
    app.add_url_rule("/api/v1/debug", "api_debug", lambda: {"ok": True}, methods=["POST"])
    monkeypatch.setattr(identity, "PUBLIC_ENDPOINTS", identity.PUBLIC_ENDPOINTS | {"api_debug"})
    problems = unprotected_routes(app)
    assert [p.split(" -> ")[0] for p in problems] == ["api_debug: POST /api/v1/debug"], problems


# --- half signed in, or made to enrol first ------------------------------------------------

# A session whose password was accepted and whose second factor is awaited reaches these and nothing
# else; a user MFA_REQUIRED covers who has no second factor reaches the second list (and the public
# endpoints). Adding to either set is a security review, like PUBLIC_ENDPOINTS.
SECOND_STEP_ENDPOINTS = frozenset(
    {"auth.login_mfa", "auth.login_mfa_cancel", "auth.passkey_login_options", "auth.passkey_login"}
)
ENROLMENT_ENDPOINTS = frozenset(
    {
        "web.account_mfa", "web.mfa_totp_start", "web.mfa_totp_confirm", "web.passkey_register_options",
        "web.passkey_register", "auth.logout", "static",
    }
)  # fmt: skip


def test_the_mfa_exemptions_are_the_reviewed_ones():
    from gateway.identity.mfa import gate

    assert gate.SECOND_STEP_ENDPOINTS == SECOND_STEP_ENDPOINTS
    assert gate.ENROLMENT_ENDPOINTS == ENROLMENT_ENDPOINTS


def held_back(client: FlaskClient, app: Flask, exempt: frozenset[str], page_target: str, api_status: int) -> list[str]:
    """Every route but ``exempt`` and the public ones: pages redirect to ``page_target``, the API answers ``api_status``."""
    csrf = csrf_token_from(client.get(page_target).get_data(as_text=True))
    problems = []
    for method, url, endpoint in sweep(app):
        if endpoint in PUBLIC_ENDPOINTS | exempt:
            continue
        response = client.open(url, method=method, data={"csrf_token": csrf}, headers={"X-CSRFToken": csrf})
        if is_api(url):
            if response.status_code != api_status:
                problems.append(f"{method} {url} -> {response.status_code}, want {api_status}")
        elif response.status_code != 302 or response.headers["Location"] != page_target:
            problems.append(f"{method} {url} -> {response.status_code} {response.headers.get('Location')}")
    return problems


def test_a_half_signed_in_session_reaches_only_the_second_step(make_app, users):
    import pyotp

    from gateway.identity import accounts
    from gateway.identity.mfa import factors, totp

    app = make_app(MFA_REQUIRED="none")
    with app.app_context():
        admin = accounts.get_user("admin")
        assert factors.confirm_totp(admin, pyotp.TOTP(totp.begin(admin).secret).now()).ok
    client = app.test_client()
    assert login_response(client, "admin", users["admin"].password).headers["Location"].startswith("/login/mfa")
    before = events(app)[-1].seq
    assert held_back(client, app, SECOND_STEP_ENDPOINTS, "/login/mfa", 401) == []
    assert client.get("/login/mfa").status_code == 200  # still half signed in, nothing changed
    assert [event.event for event in events(app) if event.seq > before] == []


def test_a_user_who_must_enrol_reaches_only_the_enrolment_page(make_app, users):
    app = make_app(MFA_REQUIRED="admins")
    client = app.test_client()
    assert login_response(client, "admin", users["admin"].password).headers["Location"] == "/"
    before = events(app)[-1].seq
    assert held_back(client, app, ENROLMENT_ENDPOINTS, "/account/mfa", 403) == []
    assert client.get("/account/mfa").status_code == 200
    assert [event.event for event in events(app) if event.seq > before] == []


# --- staff and /admin -----------------------------------------------------------------------


def test_staff_get_403_or_404_on_every_admin_route(app, client, users, login):
    login("staff")
    csrf = csrf_token_from(client.get("/account").get_data(as_text=True))
    before = events(app)[-1].seq
    admin_calls = [(m, u) for m, u, _ in sweep(app) if u.startswith("/admin")]
    assert len(admin_calls) >= 25
    for method, url in admin_calls:
        response = client.open(url, method=method, data={"csrf_token": csrf} if method == "POST" else None)
        assert response.status_code in (403, 404), f"staff {method} {url} -> {response.status_code}"
    assert not any(event.event.startswith("admin.") for event in events(app) if event.seq > before)


# --- probes leak nothing --------------------------------------------------------------------


def secrets_of(app: Flask) -> list[str]:
    """Values a probe must never show: keys, the database URL, host name, versions."""
    values = [TEST_SECRET_KEY, TEST_AUDIT_KEY, str(app.config.get("SQLALCHEMY_DATABASE_URI", "")), socket.gethostname()]
    values += [platform.python_version(), importlib.metadata.version("flask")]
    values += [sqlalchemy.__version__, os.environ.get("HOME", "/root"), "Traceback", 'File "']
    return [value for value in values if value and len(value) > 3]


@pytest.mark.parametrize("path", ["/livez", "/healthz", "/readyz", "/readyz?verbose", "/livez?verbose"])
def test_probes_answer_names_and_statuses_only(app, path):
    response = app.test_client().get(path)
    assert response.status_code in (200, 503)
    assert response.mimetype == "application/health+json"
    assert "Set-Cookie" not in response.headers
    text = response.get_data(as_text=True)
    for secret in secrets_of(app):
        assert secret not in text, f"{path} shows {secret!r}"
    body = json.loads(text)
    assert set(body) == {"status", "checks"}
    assert body["status"] in ("pass", "warn", "fail")
    for name, entries in body["checks"].items():
        assert isinstance(name, str) and len(entries) == 1
        assert set(entries[0]) <= {"status", "observedValue", "observedUnit"}, entries
        assert entries[0]["status"] in ("pass", "warn", "fail")


def test_a_failing_probe_still_leaks_nothing(make_app, database_url):
    app = make_app()
    if database_url.startswith("sqlite:///"):
        os.remove(database_url.removeprefix("sqlite:///"))
    else:
        pytest.skip("the failing database case is shown on SQLite (a removed file)")
    response = app.test_client().get("/readyz?verbose")
    assert response.status_code == 503
    text = response.get_data(as_text=True)
    for secret in [*secrets_of(app), database_url.removeprefix("sqlite:///")]:
        assert secret not in text
    assert json.loads(text)["status"] == "fail"


def test_there_is_no_metrics_route_without_its_own_list(app):
    """DESIGN names /metrics under METRICS_ALLOWED_NETWORKS: if it exists it must be in the guard's list."""

    for _, _, endpoint in sweep(app):
        if endpoint.startswith("health."):
            assert endpoint in netguard.HEALTH_ENDPOINTS | netguard.METRICS_ENDPOINTS, endpoint
            assert endpoint in HEALTH_ENDPOINTS


# --- hostile identifiers: never a 500 -------------------------------------------------------

# What an attacker puts where an id or a name goes, as it travels in a URL (already percent-encoded).
HOSTILE = {
    "nul": "a%00b",
    "10kb": "x" * 10_240,
    "invalid-utf8": "%ff%fe",
    "traversal": "..%2F..%2Fetc%2Fpasswd",
}
# Every query argument a view reads, by endpoint. test_every_query_argument_the_code_reads_is_swept
# keeps this honest: a view that starts reading a new argument fails until it is listed here.
AUDIT_FILTERS = ("actor", "event", "command", "outcome", "source_ip", "text", "since", "until")
QUERY_ARGS = {
    "web.history": ("command", "status", "cursor"),
    "web.approvals_page": ("waiting_cursor", "requested_cursor"),  # each list's position (the API's cursor)
    "web.run_page": ("cached",),
    "web.command_form": ("args",),
    "admin.runs": ("command", "status", "user", "cursor"),
    "admin.audit": (*AUDIT_FILTERS, "before"),
    "admin.audit_export_view": AUDIT_FILTERS,
    "api.list_runs": ("command", "status", "limit", "cursor"),
    "api.get_run": ("wait",),
    "api.stream_run": ("last_event_id",),
    "api.list_audit": ("actor", "event", "command", "outcome", "source_ip", "since", "until", "limit", "cursor"),
    "api.verify_audit": ("from_seq",),
    "api.schedule_runs": ("limit", "cursor"),
    "api.command_choices": ("status",),  # the values a list depends on (the demo's task-detail: status)
    "api.list_approvals": ("scope", "limit", "cursor"),
    "shell2http.command": ("key", "wait"),
    "shell2http.delete": ("key",),
    "health.readyz": ("verbose",),
    "auth.oidc_login": ("next", "max_age"),
    "auth.oidc_callback": ("state", "code", "error", "iss"),
}
# Path values that reach the views' code when nothing hostile is in them.
REAL_NAMES = {"web.tile": "uptime", "web.tile_refresh": "uptime", "admin.audit_export_view": "csv"}
# ... where a rule's variables need different ones: the demo catalogue's dependent pair.
REAL_VALUES = {("api.command_choices", "name"): "task-detail", ("api.command_choices", "param"): "task"}
REAL_NAMES["admin.retry_delivery"] = (
    "0b6f2a57-3f0f-4d43-9d4b-6a5b4d1f7a10"  # shaped like a delivery id: reaches the view
)
REAL_NAMES.update(  # the demo catalogue's schedule (commands.yaml)
    dict.fromkeys(
        ("web.schedule_refresh", "admin.pause_schedule", "admin.resume_schedule", "api.schedule_runs"),
        "uptime-every-5-min",
    )
)
GROUP_ENDPOINTS = (
    "admin.delete_group",
    "admin.add_member",
    "admin.remove_member",
    "admin.link_idp_group",
    "admin.unlink_idp_group",
)


@pytest.fixture
def demo_ops(tmp_path, monkeypatch) -> None:
    """The demo data source, set before the app loads its catalogue: lists from data are read for real."""
    from gateway.cli.demo import ensure_demo_datasource

    ensure_demo_datasource(tmp_path / "demo-ops.db")
    monkeypatch.setenv("OPS_DB_URL", f"sqlite:///{tmp_path / 'demo-ops.db'}")


@pytest.fixture
def hostile_setup(app, users, login):
    """Staff granted ``echo``, ``uptime`` and ``task-detail`` through group ``ops``, one finished run of each user's."""
    from gateway import runs
    from gateway.db.models import User

    with app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        for command in ("echo", "uptime", "task-detail"):
            groups.add_grant("ops", command)
        staff = db.session.get(User, users["staff"].id)
        started = runs.start("echo", {"args": ["hello"]}, runs.Caller(user=staff, source_ip="127.0.0.1"))
        run_id = started.run.id
    return run_id


def is_int(rule: Rule, name: str) -> bool:
    return "integer" in type(rule._converters[name]).__name__.lower()


def real_value(rule: Rule, name: str, run_id: str) -> object:
    if is_int(rule, name):
        return 1
    if name == "run_id":
        return run_id
    if rule.endpoint in GROUP_ENDPOINTS:
        return "ops"
    return REAL_VALUES.get((rule.endpoint, name)) or REAL_NAMES.get(rule.endpoint, "echo")


def hostile_urls(app: Flask, run_id: str) -> list[tuple[str, str]]:
    """(method, url): each rule with each hostile value in each path variable, then in each query argument."""
    calls = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        for variable in rule.arguments:
            values = {name: real_value(rule, name, run_id) for name in rule.arguments}
            marker = "987654321" if is_int(rule, variable) else "HOSTILEVALUE"
            values[variable] = marker
            with app.test_request_context():
                _, path = rule.build(values)
            for raw in HOSTILE.values():
                calls += [(method, path.replace(marker, raw)) for method in methods]
        with app.test_request_context():
            _, path = rule.build({name: real_value(rule, name, run_id) for name in rule.arguments})
        for arg in QUERY_ARGS.get(rule.endpoint, ()):
            for raw in HOSTILE.values():
                calls += [(method, f"{path}?{arg}={raw}") for method in methods if method in ("GET", "DELETE")]
    return calls


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_hostile_ids_and_names_never_answer_500(demo_ops, app, client, hostile_setup, login, role):
    """NUL, 10 KB, invalid UTF-8 and ``../`` in every path variable and known query argument: never a 500."""
    login(role)
    csrf = csrf_token_from(client.get("/account").get_data(as_text=True))
    calls = hostile_urls(app, hostile_setup)
    assert len(calls) > 200
    answers = {}
    for method, url in calls:
        # A destructive browser form answers its first POST with a confirmation page and acts on
        # the second (confirm=yes): both steps meet the hostile values.
        for data in ({"csrf_token": csrf}, {"csrf_token": csrf, "confirm": "yes"}) if method == "POST" else (None,):
            response = client.open(url, method=method, data=data, headers={"X-CSRFToken": csrf})
            response.get_data()  # a streamed body runs to its end
            answers[(method, url[:80])] = max(answers.get((method, url[:80]), 0), response.status_code)
    failures = sorted(f"{m} {u} -> {s}" for (m, u), s in answers.items() if s >= 500)
    assert failures == [], "\n".join(failures)
    assert client.get("/account").status_code == 200  # still signed in: the sweep ran as this user throughout


def test_every_query_argument_the_code_reads_is_swept():
    """A view that reads a query argument the sweep does not send fails here, not in production."""
    import re
    from dataclasses import fields
    from pathlib import Path

    import gateway
    from gateway.audit.queries import AuditFilter

    pattern = re.compile(r"""(?:request\.args\.get|_arg)\(\s*["']([a-z_]+)["']""")
    read = set()
    for path in Path(gateway.__file__).parent.rglob("*.py"):
        read |= set(pattern.findall(path.read_text()))
    read |= {field.name for field in fields(AuditFilter)}
    swept = {arg for args in QUERY_ARGS.values() for arg in args}
    assert read - swept == set()


def test_hostile_input_to_the_oidc_routes_never_answers_500(make_app, idp):
    """The sign-in routes with OIDC on (the sweep above runs with it off): anonymous, with and without a pending state."""
    app = make_app(**idp.settings())
    calls = [
        f"/login/oidc/callback?{arg}={raw}" for arg in QUERY_ARGS["auth.oidc_callback"] for raw in HOSTILE.values()
    ]
    calls += [f"/login/oidc?{arg}={raw}" for arg in QUERY_ARGS["auth.oidc_login"] for raw in HOSTILE.values()]
    for pending in (False, True):
        client = app.test_client()
        for url in calls:
            if pending:
                assert client.get("/login/oidc").status_code == 302
            response = client.get(url)
            assert response.status_code in (302, 400, 401), f"{url[:80]} -> {response.status_code}"
    with app.app_context():
        outcomes = {
            e.outcome for e in db.session.scalars(select(AuditEvent).where(AuditEvent.event == "auth.login_failed"))
        }
    assert outcomes <= {"bad_state", "idp_error", "code_rejected"} and "bad_state" in outcomes
