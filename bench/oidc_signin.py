"""OIDC callback handling against local password sign-in, in one run (issue 15's performance note).

Run: ``.venv/bin/python bench/oidc_signin.py [rounds]`` (default 60; needs
``npm ci --prefix tests/oidc_provider``). One app at production password-hash
cost (``GATEWAY_ENV=development``: the strong Argon2 profile), on SQLite, with
both methods on; the test OpenID provider (panva's oidc-provider) runs locally.

- local: the ``POST /login`` of a correct password (form fetched beforehand);
- OIDC: ``GET /login/oidc/callback`` with the code the provider issued (the
  browser's part at the provider is done beforehand and not timed): state
  check, code redemption, ID token checks against the cached key set, the
  account and group sync, the session. Its share spent waiting on the IdP
  (the token endpoint; the key set once) is the client's own timer.

Prints p50/p95 of both, the IdP-wait share, and how many times the provider
served its key set (counted at the provider: once per key set, not per sign-in).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import create_app
from gateway.db import migrate
from gateway.identity import accounts, groups, oidc
from tests.conftest import csrf_token_from
from tests.oidc_idp import idp_browser, path_of, provider_missing, running_provider

PASSWORD = "bench-password-123"


def build_app(directory: Path, settings: dict[str, str]) -> Any:
    environ = {
        "GATEWAY_ENV": "development",
        "SECRET_KEY": "bench-secret-key-" + "x" * 32,
        "AUDIT_KEY": "bench-audit-key-" + "y" * 32,
        "DATABASE_URL": f"sqlite:///{directory / 'bench.db'}",
        "PUBLIC_BASE_URL": "http://localhost",
        "LOGIN_RATE_LIMIT": "100000/minute",
        "RATELIMIT_STORAGE_URI": "memory://",
        **settings,
    }
    app = create_app(environ, instance_path=directory / "instance")
    with app.app_context():
        migrate.upgrade()
        accounts.create_user("local-user", PASSWORD)
        groups.create_group("ops")
    return app


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(rounds: int) -> None:
    missing = provider_missing()
    if missing:
        raise SystemExit(missing)
    with tempfile.TemporaryDirectory() as scratch, running_provider(Path(scratch)) as idp:
        app = build_app(Path(scratch), idp.settings())
        local_ms: list[float] = []
        oidc_ms: list[float] = []
        idp_wait_ms: list[float] = []
        browser = idp_browser()
        jwks_before = idp.stats()["jwks"]
        for _ in range(rounds):
            client = app.test_client()
            token = csrf_token_from(client.get("/login").get_data(as_text=True))
            began = time.perf_counter()
            response = client.post("/login", data={"username": "local-user", "password": PASSWORD, "csrf_token": token})
            local_ms.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 302, response.status_code

            client = app.test_client()
            callback = path_of(idp.authorize(client.get("/login/oidc").headers["Location"], browser=browser))
            with app.app_context():
                waited_before = oidc.client().idp_seconds
            began = time.perf_counter()
            response = client.get(callback)
            oidc_ms.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 302, response.get_data(as_text=True)[:300]
            with app.app_context():
                idp_wait_ms.append((oidc.client().idp_seconds - waited_before) * 1000)
        jwks = idp.stats()["jwks"] - jwks_before
    share = sum(idp_wait_ms) / sum(oidc_ms)
    print(f"rounds: {rounds} (SQLite, production hash cost, oidc-provider on loopback)")
    print(
        f"local password sign-in  p50 {statistics.median(local_ms):7.1f} ms  p95 {percentile(local_ms, 0.95):7.1f} ms"
    )
    print(f"OIDC callback           p50 {statistics.median(oidc_ms):7.1f} ms  p95 {percentile(oidc_ms, 0.95):7.1f} ms")
    print(
        f"  of which waiting on the IdP: {share:.0%} of the total "
        f"(p50 {statistics.median(idp_wait_ms):.1f} ms, p95 {percentile(idp_wait_ms, 0.95):.1f} ms per callback)"
    )
    print(f"JWKS fetched by the gateway: {jwks} time(s) for {rounds} sign-ins (counted at the provider)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
