"""OIDC attacks that need tokens no honest provider issues, and the anonymous flood of sign-in starts.

A ``Forger`` is a hostile (or broken) provider on a local port: it serves a
discovery document, its own key set, and a token endpoint answering whatever
ID token the test wrote, signed (or not) with keys the test chooses. The code
flow is otherwise the gateway's real one: ``/login/oidc`` puts state, nonce and
verifier in the cookie, the callback redeems the code over HTTP and checks the
token. A positive control (an honest token from the forger signs in) keeps the
refusals honest: each is refused for the one thing the test changed.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from sqlalchemy import func, inspect, select
from werkzeug.test import EnvironBuilder

from gateway.db.models import AuditEvent, User
from gateway.platform.extensions import db
from tests.oidc_idp import CLIENT_ID, CLIENT_SECRET, Idp


class Forger:
    """A provider the test controls: ``document`` is its discovery answer, ``token`` builds the ID token per nonce."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "forged-1", "use": "sig"}, private=True)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.document: dict[str, Any] = {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/auth",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "userinfo_endpoint": f"{self.url}/me",
            "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        }
        self.id_token: Callable[[], str] = lambda: ""
        self.userinfo: dict[str, Any] = {}
        self.hits: dict[str, int] = {}
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        forger = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                forger.hits[path] = forger.hits.get(path, 0) + 1
                if path == "/.well-known/openid-configuration":
                    self._send(forger.document)
                elif path == "/jwks":
                    self._send({"keys": [forger.key.as_dict(private=False)]})
                else:
                    self._send(forger.userinfo)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                forger.hits["/token"] = forger.hits.get("/token", 0) + 1
                self._send({"access_token": "forged-access", "token_type": "Bearer", "id_token": forger.id_token()})

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def forger() -> Iterator[Forger]:
    forged = Forger()
    yield forged
    forged.close()


def settings(issuer: str) -> dict[str, str]:
    return {
        "AUTH_METHODS": "local,oidc",
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_SCOPES": "openid profile groups",
    }


def honest_claims(forger: Forger, nonce: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": forger.url, "sub": "forged-sub", "aud": CLIENT_ID, "exp": now + 300, "iat": now, "nonce": nonce,
        "preferred_username": "eve", "groups": ["admins"],
    }  # fmt: skip


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def attempt(app: Flask, forger: Forger, token: Callable[[dict[str, Any]], str]):
    """One sign-in whose ID token is ``token(claims)``, the claims an honest provider would have sent."""
    client = app.test_client()
    query = parse_qs(urlsplit(client.get("/login/oidc").headers["Location"]).query)
    claims = honest_claims(forger, query["nonce"][0])
    forger.id_token = lambda: token(claims)
    return client.get(f"/login/oidc/callback?code=forged-code&state={query['state'][0]}")


def signed(forger: Forger, **changes: Any) -> Callable[[dict[str, Any]], str]:
    def make(claims: dict[str, Any]) -> str:
        claims = {key: value for key, value in {**claims, **changes}.items() if value is not None}
        return jwt.encode({"alg": "RS256", "kid": forger.key.kid}, claims, forger.key)

    return make


def refused_as(app: Flask, reason: str) -> None:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "auth.login_failed")).all()
        assert [(row.outcome, row.detail) for row in rows] == [(reason, {"method": "oidc"})]
        assert db.session.scalar(select(func.count()).select_from(User).where(User.source == "oidc")) == 0


def test_the_forger_is_an_honest_provider_until_it_lies(make_app, forger):
    app = make_app(**settings(forger.url))
    response = attempt(app, forger, signed(forger))
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User.username).where(User.source == "oidc")) == "eve"
    # Several audiences are fine when the authorized party is us.
    response = attempt(app, forger, signed(forger, aud=[CLIENT_ID, "other"], azp=CLIENT_ID))
    assert response.status_code == 302


LIES = {
    "wrong aud": {"aud": "someone-else"},
    "several aud, no azp": {"aud": [CLIENT_ID, "someone-else"]},
    "azp of another client": {"aud": [CLIENT_ID, "someone-else"], "azp": "someone-else"},
    "expired": {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000},
    "issued in the future": {"iat": int(time.time()) + 3600},
    "wrong nonce": {"nonce": "not-the-one-we-sent"},
    "no nonce": {"nonce": None},
    "another issuer": {"iss": "https://idp.example.test"},
    "no subject": {"sub": None},
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_token_with_a_bad_claim_is_refused(make_app, forger, lie):
    app = make_app(**settings(forger.url))
    response = attempt(app, forger, signed(forger, **LIES[lie]))
    assert response.status_code == 401 and "failed a check" in response.get_data(as_text=True)
    refused_as(app, "bad_token")


def test_an_unsigned_token_is_refused(make_app, forger):
    app = make_app(**settings(forger.url))
    response = attempt(app, forger, lambda claims: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.")
    assert response.status_code == 401
    refused_as(app, "bad_token")


def test_a_token_signed_with_the_client_secret_is_refused(make_app, forger):
    app = make_app(**settings(forger.url))
    secret = OctKey.import_key(CLIENT_SECRET)
    response = attempt(app, forger, lambda claims: jwt.encode({"alg": "HS256"}, claims, secret))
    assert response.status_code == 401
    refused_as(app, "bad_token")


def test_a_token_signed_by_another_key_under_a_published_kid_is_refused(make_app, forger):
    app = make_app(**settings(forger.url))
    impostor = RSAKey.generate_key(2048, parameters={"kid": forger.key.kid}, private=True)
    response = attempt(app, forger, lambda claims: jwt.encode({"alg": "RS256", "kid": impostor.kid}, claims, impostor))
    assert response.status_code == 401
    refused_as(app, "bad_token")


def test_userinfo_about_another_subject_is_refused(make_app, forger):
    app = make_app(**settings(forger.url))
    forger.userinfo = {"sub": "somebody-else", "preferred_username": "eve", "groups": ["admins"]}
    response = attempt(app, forger, signed(forger, groups=None))  # no groups in the token: userinfo is asked
    assert response.status_code == 401 and forger.hits.get("/me") == 1
    refused_as(app, "bad_token")


def test_a_token_endpoint_of_another_provider_cannot_sign_for_the_first(make_app, forger, idp: Idp):
    """Discovery names the real provider's key set but a second provider's token endpoint (other keys)."""
    real = requests.get(f"{idp.issuer}/.well-known/openid-configuration", timeout=10).json()
    forger.document = {**real, "issuer": forger.url, "token_endpoint": f"{forger.url}/token"}
    app = make_app(**settings(forger.url))
    before = idp.stats()["jwks"]
    for _ in range(3):
        response = attempt(app, forger, signed(forger))
        assert response.status_code == 401 and "failed a check" in response.get_data(as_text=True)
    # The real key set was fetched, and once more for the unknown kid; not again for the same stranger.
    assert idp.stats()["jwks"] == before + 2
    with app.app_context():
        outcomes = db.session.scalars(select(AuditEvent.outcome).where(AuditEvent.event == "auth.login_failed")).all()
        assert outcomes == ["bad_token"] * 3
        assert db.session.scalar(select(func.count()).select_from(User).where(User.source == "oidc")) == 0


def row_counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        tables = [
            db.metadata.tables[name] for name in inspect(db.engine).get_table_names() if name in db.metadata.tables
        ]
        return {table.name: db.session.scalar(select(func.count()).select_from(table)) for table in tables}


FLOOD = 10_000
# tracemalloc slows every allocation several times over: it watches the last starts, where any per-start growth
# shows, after a traced warm-up that refills bounded caches (urllib's split cache) with traced entries.
# tracemalloc also counts other threads (an earlier test's app may still be winding down in this worker): the
# smallest growth of three windows is the server's; a per-start leak grows in every one of them.
WARM, TRACED, WINDOWS = 200, 500, 3


@pytest.mark.slow  # 10,000 requests through the whole stack: ~20 s, the suite's longest test
def test_a_flood_of_anonymous_sign_in_starts_grows_nothing_on_the_server(make_app, forger, caplog):
    """10,000 starts from cookieless clients: no row written, no memory kept (traced over the last three 500s).

    Driven through the WSGI app directly (the test client's request building
    would triple the time); each start runs the whole stack: network gate,
    sign-in gate, rate limit, the view, the signed cookie.
    """
    app = make_app(**settings(forger.url), LOGIN_RATE_LIMIT=f"{FLOOD * 2}/minute")
    # pytest's log capture keeps every access-log record of the test (once an earlier test in this
    # worker made the gateway's loggers propagate): harness memory, not the server's.
    caplog.set_level(logging.CRITICAL, logger="gateway")
    environ = EnvironBuilder(path="/login/oidc", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
    statuses: Counter[str] = Counter()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        statuses[status] += 1

    def starts(count: int) -> None:
        for _ in range(count):
            b"".join(app.wsgi_app(dict(environ), start_response))

    starts(1)  # discovery fetched and cached before counting
    before_rows = row_counts(app)
    starts(FLOOD - WARM - TRACED * WINDOWS - 1)
    tracemalloc.start()
    starts(WARM)
    growth = []
    for _ in range(WINDOWS):
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        starts(TRACED)
        gc.collect()
        growth.append(tracemalloc.get_traced_memory()[0] - baseline)
    tracemalloc.stop()
    grown = min(growth)
    assert statuses == {"302 FOUND": FLOOD}
    assert row_counts(app) == before_rows
    assert grown < 10_000, f"{growth} bytes kept over each {TRACED} anonymous starts"
    assert forger.hits["/.well-known/openid-configuration"] == 1  # nor a request to the IdP per start
