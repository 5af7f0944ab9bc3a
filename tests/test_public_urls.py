"""The Host header chooses nothing: every absolute URL comes from PUBLIC_BASE_URL, and TRUSTED_HOSTS gates Host.

A request that says ``Host: attacker.example`` (or ``X-Forwarded-Host``) must
not get an invite link, an API ``url``/``stream_url``/``runs_url`` or a
Shell2HTTP ``result_url`` pointing there: a token in such a link would travel to
the attacker's site.  With ``TRUSTED_HOSTS`` set, any other Host is a 400,
except on the probes and ``/metrics``, which kubelet and Prometheus call by pod IP.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

import gateway
from config import PROJECT_ROOT
from gateway.cli.demo import served_base_url
from gateway.db.models import Run
from gateway.platform.extensions import db
from gateway.platform.urls import external_url
from tests.conftest import base_environ, csrf_token_from, seed_session
from tests.test_api_runs import issue_token
from tests.test_shell2http import CATALOGUE

pytestmark = pytest.mark.both_engines  # the attack suite: forged hosts and public URLs, per engine

PUBLIC = "https://ops.example.com/gateway"
EVIL = {"Host": "attacker.example", "X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "http"}
INVITE_LINK = re.compile(r'id="invite-link" class="token" value="([^"#]+)#([A-Za-z0-9_-]+)"')


@pytest.fixture
def url_app(make_app, tmp_path: Path):
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    # One trusted proxy: even the proxy's forwarded Host and scheme must not choose a link.
    return make_app(GATEWAY_COMMANDS_FILE=path, PUBLIC_BASE_URL=PUBLIC + "/", TRUSTED_PROXY_COUNT=1)


@pytest.fixture
def admin_token(url_app, users) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(url_app, 'admin')[1]}", **EVIL}


def test_an_invite_link_made_under_a_forged_host_points_at_the_public_base_url(url_app, users):
    admin = url_app.test_client()
    seed_session(url_app, admin, users["admin"].id)
    cookie = admin.get_cookie("gateway_session")
    assert cookie is not None
    admin.set_cookie("gateway_session", cookie.value, domain="attacker.example")  # the browser that sent that Host
    token = csrf_token_from(admin.get("/admin/users", headers=EVIL).get_data(as_text=True))
    data = {"csrf_token": token, "username": "newbie", "password_mode": "invite"}
    created = admin.post("/admin/users", data=data, headers=EVIL)
    assert created.status_code == 303, created.get_data(as_text=True)
    page = admin.get(created.headers["Location"], headers=EVIL).get_data(as_text=True)
    match = INVITE_LINK.search(page)
    assert match, "no invite link on the page"
    assert match.group(1) == f"{PUBLIC}/invite"
    assert "attacker.example" not in page


def test_api_urls_under_a_forged_host_point_at_the_public_base_url(url_app, admin_token):
    client = url_app.test_client()
    command = client.get("/api/v1/commands/saythis", headers=admin_token).get_json()
    assert command["runs_url"] == f"{PUBLIC}/api/v1/commands/saythis/runs"
    started = client.post("/api/v1/commands/saythis/runs", json={"params": {"args": ["hi"]}}, headers=admin_token)
    assert started.status_code == 202, started.get_json()
    body = started.get_json()
    assert body["url"] == f"{PUBLIC}/api/v1/runs/{body['id']}" == started.headers["Location"]
    assert body["stream_url"] == f"{PUBLIC}/api/v1/runs/{body['id']}/stream"


def test_shell2http_result_urls_under_a_forged_host_point_at_the_public_base_url(url_app, admin_token):
    client = url_app.test_client()
    first = client.post("/shell2http/pidsleep", json={"args": ["30"]}, headers=admin_token)
    assert first.status_code == 202
    key = first.get_json()["key"]
    expected = f"{PUBLIC}/shell2http/pidsleep?key={key}&wait=false"
    assert first.get_json()["result_url"] == expected
    running = client.get(f"/shell2http/pidsleep?key={key}", headers=admin_token).get_json()
    assert running["result_url"] == expected
    again = client.post("/shell2http/pidsleep", json={"args": ["30"]}, headers=admin_token)
    assert again.status_code == 400 and again.get_json()["result_url"] == expected  # the "still running" error
    assert client.delete(f"/shell2http/pidsleep?key={key}", headers=admin_token).status_code == 204


def test_urls_are_built_without_a_request(url_app):
    # Background work (the executor, CLI commands) has an app context and no request at all.
    with url_app.app_context():
        assert external_url("api.get_run", run_id="abc") == f"{PUBLIC}/api/v1/runs/abc"
        assert external_url("auth.invite") == f"{PUBLIC}/invite"


# --- TRUSTED_HOSTS ------------------------------------------------------------------------------


@pytest.fixture
def gated(make_app):
    return make_app(PUBLIC_BASE_URL="https://ops.example.com", TRUSTED_HOSTS="ops.example.com,.ops.internal")


@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("/login", "attacker.example"),
        ("/", "ops.example.com.attacker.example"),
        ("/api/v1/commands", "10.0.0.5:8000"),
        ("/shell2http/x", "attacker.example"),
        ("/no-such-page", "xops.internal"),
        ("/invite", ""),
        ("/login", "ops.example.com@attacker.example"),
    ],
)
def test_trusted_hosts_refuses_any_other_host_with_400(gated, path, host):
    response = gated.test_client().get(path, headers={"Host": host})
    assert response.status_code == 400
    assert response.get_data(as_text=True) == "Bad Request: unknown host\n"


@pytest.mark.parametrize("host", ["ops.example.com", "OPS.example.com:443", "a.ops.internal:8000", "ops.internal"])
def test_trusted_hosts_admits_the_names_it_lists(gated, host):
    assert gated.test_client().get("/login", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("path", ["/livez", "/healthz", "/readyz", "/metrics"])
def test_probes_and_metrics_answer_whatever_the_host(gated, path):
    # kubelet and Prometheus call by pod IP, so their Host is an address TRUSTED_HOSTS never lists.
    response = gated.test_client().get(path, headers={"Host": "10.1.2.3:8000"})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_an_untrusted_host_runs_nothing(gated, users):
    client = gated.test_client()
    headers = {"Authorization": f"Bearer {issue_token(gated, 'admin')[1]}", "Host": "attacker.example"}
    assert client.post("/api/v1/commands/uptime/runs", json={}, headers=headers).status_code == 400
    with gated.app_context():
        assert db.session.scalar(select(func.count()).select_from(Run)) == 0
    headers["Host"] = "ops.example.com"
    assert client.post("/api/v1/commands/uptime/runs", json={}, headers=headers).status_code in (200, 202)


def test_the_network_allowlist_still_answers_first(gated):
    outside = {"REMOTE_ADDR": "10.66.0.1"}
    response = gated.test_client().get("/login", headers={"Host": "attacker.example"}, environ_base=outside)
    assert response.status_code == 403


# --- the bug class --------------------------------------------------------------------------------

REQUEST_ORIGIN = re.compile(r"_external\s*=|\.url_root\b|\.host_url\b|\brequest\.(host|url|base_url|root_url)\b")


def test_nothing_but_gateway_urls_builds_an_absolute_url_from_the_request():
    # A view that reaches for Flask's url_for(_external=True) or request.host_url brings the Host header back.
    allowed = {"urls.py", "netguard.py"}  # netguard reads request.host only to refuse it
    package = Path(gateway.__file__).parent
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name not in allowed
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if REQUEST_ORIGIN.search(line)
    ]
    assert found == []


# --- manage.py serve (development) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("127.0.0.1", "http://127.0.0.1:5000"),
        ("0.0.0.0", "http://127.0.0.1:5000"),  # a wildcard is reached via loopback
        ("::", "http://127.0.0.1:5000"),
        ("::1", "http://[::1]:5000"),
        ("gw.local", "http://gw.local:5000"),
    ],
)
def test_serve_points_links_where_it_listens(host, base):
    assert served_base_url(host, 5000) == base


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_manage_py_serve_prints_and_hands_out_urls_that_work(app, users, database_url, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = base_environ(database_url, PATH=os.environ["PATH"], GATEWAY_INSTANCE_PATH=str(tmp_path / "serve"))
    argv = [sys.executable, "manage.py", "serve", "--port", str(port)]
    server = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=environ, stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stderr.readline() if server.stderr else ""
        assert banner.startswith(f"Ops Gateway on http://127.0.0.1:{port}/ "), banner
        headers = {"Authorization": f"Bearer {issue_token(app, 'admin')[1]}"}
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/v1/commands/uptime", headers=headers, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "serve never answered"
                time.sleep(0.1)
        runs_url = answer.json()["runs_url"]
        assert runs_url == f"http://127.0.0.1:{port}/api/v1/commands/uptime/runs"
        assert requests.post(runs_url, json={}, headers=headers, timeout=30).status_code in (200, 202)
    finally:
        server.kill()
        server.wait(timeout=10)
