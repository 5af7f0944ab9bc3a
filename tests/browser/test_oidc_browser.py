"""Single sign-on in a real browser: Chromium signs in at the test OpenID provider's own pages and back.

The gateway is served on a free port (its PUBLIC_BASE_URL registered at the
provider as a redirect URI); the provider is the session's oidc-provider
(tests/oidc_idp.py). The user clicks "Sign in with Test IdP", signs in and
consents at the provider, lands on the dashboard as the account the provider
named, creates an API token without being asked a password (the sign-in is
fresh), then signs out and follows the offered link to sign out at the
provider too, which returns to the gateway's sign-in page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_web_browser import shot
from tests.oidc_idp import ACCOUNTS, Idp

pytestmark = pytest.mark.slow


@pytest.fixture
def gateway_url(make_app, idp: Idp) -> Iterator[str]:
    from werkzeug.serving import make_server

    idp.set_accounts(ACCOUNTS)
    app = make_app(**idp.settings())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = base
    idp.allow_gateway_at(base)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join(5)


@pytest.fixture
def page(browser: Browser, gateway_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=gateway_url)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    problems: list[str] = []
    # Only the gateway's pages are held to a clean console (the provider's dev pages are not ours).
    tab.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and tab.url.startswith(gateway_url) else None,
    )
    yield tab
    context.close()
    assert [line for line in problems if "404" not in line and "401" not in line] == []


def test_sign_in_and_out_through_the_provider_in_chromium(page: Page, idp: Idp, gateway_url: str):
    page.goto("/login")
    expect(page.get_by_label("Username")).to_be_visible()  # local accounts still sign in here too
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(f"{idp.issuer}/interaction/**")
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("any-password")
    page.locator("button[type=submit]").click()
    page.locator("button[type=submit]").click()  # the consent page: continue
    page.wait_for_url(f"{gateway_url}/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator(".who")).to_have_text("Alice Ops")
    shot(page, "oidc-signed-in")

    page.goto("/account")
    expect(page.get_by_role("heading", name="Change password")).to_have_count(0)  # the IdP keeps the password
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    assert page.locator("#new-token").input_value().startswith("gw_")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.get_by_role("link", name="Sign out of Test IdP too").click()
    page.wait_for_url(f"{idp.issuer}/session/end**")
    page.locator("button[autofocus], button[type=submit]").first.click()  # the provider asks to confirm
    page.wait_for_url(f"{gateway_url}/login**")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "oidc-signed-out")
    # Signed out at the provider too: the next sign-in asks for the password there again.
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(f"{idp.issuer}/interaction/**")
    expect(page.locator("input[name=login]")).to_be_visible()
