"""A real OpenID provider for the OIDC tests: panva's oidc-provider (tests/oidc_provider/), one per test process.

``idp`` (session-scoped, registered as a plugin by tests/conftest.py) starts
``server.mjs`` on a free port and hands the tests an ``Idp``: its issuer, the
client the gateway is registered as, test accounts with a ``groups`` claim, and
``authorize`` which walks a browser's part of the code flow through the
provider's real login and consent pages with ``requests``. Without
``tests/oidc_provider/node_modules`` (``make test`` runs ``npm ci`` there) the
tests skip, unless ``GATEWAY_TEST_REQUIRE_OIDC=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
REQUIRE_OIDC = os.environ.get("GATEWAY_TEST_REQUIRE_OIDC") == "1"
CLIENT_ID = "gateway"
CLIENT_SECRET = "gateway-test-client-secret-0123456789"
GATEWAY_BASE = "http://localhost"  # PUBLIC_BASE_URL of the apps the tests build (conftest: testing's default)
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {"preferred_username": "alice", "name": "Alice Ops", "email": "alice@example.test", "groups": ["ops"]},
    "bob": {"preferred_username": "bob", "name": "Bob Viewer", "groups": []},
}
FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"')
PROMPT = re.compile(r'name="prompt" value="([a-z]+)"')


def client_registration(base_urls: list[str]) -> list[dict[str, Any]]:
    """The gateway as the provider's confidential client, for apps at each of ``base_urls``."""
    return [
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [f"{base}/login/oidc/callback" for base in base_urls],
            "post_logout_redirect_uris": [f"{base}/login" for base in base_urls],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
    ]


class Idp:
    """The running provider: settings for the gateway, its counters, and a user agent for its pages."""

    def __init__(self, port: int):
        self.issuer = f"http://127.0.0.1:{port}"
        self.base_urls = [GATEWAY_BASE]

    def settings(self, **overrides: str) -> dict[str, str]:
        """App settings that sign in against this provider (``make_app(**idp.settings())``)."""
        return {
            "AUTH_METHODS": "local,oidc",
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_SCOPES": "openid profile email groups",
            "OIDC_DISPLAY_NAME": "Test IdP",
            **overrides,
        }

    def _call(self, method: str, path: str, body: object = None) -> Any:
        response = requests.request(method, self.issuer + path, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, int]:
        return dict(self._call("GET", "/__test/stats"))

    def rotate_keys(self) -> str:
        return str(self._call("POST", "/__test/rotate")["kid"])

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        self._call("PUT", "/__test/accounts", accounts)

    def claims_in_userinfo_only(self, on: bool) -> None:
        """Keep profile and groups claims out of the ID token (the gateway must then ask userinfo)."""
        self._call("PUT", "/__test/settings", {"conform_id_token_claims": on})

    def allow_gateway_at(self, base_url: str) -> None:
        """Register another gateway address (a live server's port) as a redirect URI."""
        if base_url not in self.base_urls:
            self.base_urls.append(base_url)
            self._call("PUT", "/__test/clients", client_registration(self.base_urls))

    def authorize(
        self, authorization_url: str, login: str = "alice", *, browser: requests.Session | None = None
    ) -> str:
        """Play the browser at the provider: sign in as ``login`` and consent when asked; the callback URL it returns to.

        ``browser`` keeps the provider's cookies between flows (single sign-on,
        ``max_age=0``); the pages it had to fill in are in ``browser.pages_seen``.
        """
        agent = browser or idp_browser()
        url = authorization_url
        response = agent.get(url, allow_redirects=False, timeout=10)
        for _ in range(20):
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                if not url.startswith(self.issuer):
                    return url
                response = agent.get(url, allow_redirects=False, timeout=10)
                continue
            prompt = PROMPT.search(response.text)
            action = FORM_ACTION.search(response.text)
            assert response.status_code == 200 and prompt and action, (
                f"unexpected page at the IdP: {response.text[:500]}"
            )
            agent.pages_seen.append(prompt.group(1))  # type: ignore[attr-defined]
            form = {"prompt": prompt.group(1)}
            if prompt.group(1) == "login":
                form.update(login=login, password="any-password")
            url = urljoin(url, action.group(1))
            response = agent.post(url, data=form, allow_redirects=False, timeout=10)
        raise AssertionError("the provider kept redirecting")


def idp_browser() -> requests.Session:
    agent = requests.Session()
    agent.pages_seen = []  # type: ignore[attr-defined]
    return agent


def path_of(url: str) -> str:
    """The path and query of an absolute URL, for the Flask test client."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def provider_missing() -> str | None:
    """Why the test provider cannot start here, or None."""
    if shutil.which("node") is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return "the test OpenID provider is not installed (make test runs npm ci --prefix tests/oidc_provider)"
    return None


@contextmanager
def running_provider(directory: Path) -> Iterator[Idp]:
    """Start ``server.mjs`` on a free port (its settings file in ``directory``) and stop it afterwards."""
    config = directory / "provider.json"
    config.write_text(json.dumps({"accounts": ACCOUNTS, "clients": client_registration([GATEWAY_BASE])}))
    process = subprocess.Popen(
        [shutil.which("node") or "node", str(PROVIDER_DIR / "server.mjs")],
        cwd=PROVIDER_DIR,
        env={**os.environ, "PROVIDER_CONFIG": str(config), "NODE_ENV": "test"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        stdout = process.stdout
        assert stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=20)
        if not ready or not ready[0].startswith("READY "):
            raise RuntimeError(f"the test OpenID provider did not start: {ready}")
        yield Idp(int(ready[0].split()[1]))
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    reason = provider_missing()
    if reason is not None:
        if REQUIRE_OIDC:
            pytest.fail(f"GATEWAY_TEST_REQUIRE_OIDC=1 but {reason}")
        pytest.skip(reason)
    with running_provider(tmp_path_factory.mktemp("oidc-provider")) as provider:
        yield provider
