"""Passkeys as a second factor in a real browser: Chromium's DevTools virtual authenticator over CDP.

WebAuthn wants a domain as relying-party id, so the server is reached as
``http://localhost:<port>`` (a secure context, unlike an IP over http) and
``PUBLIC_BASE_URL`` says the same, as ``manage.py serve`` would. An admin whom
``MFA_REQUIRED=admins`` sends to enrol registers a passkey, names it, signs in
again with it after the password, and removes it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import PASSWORDS

pytestmark = pytest.mark.slow


@pytest.fixture
def base_url(make_app, users) -> Iterator[str]:
    from werkzeug.serving import make_server

    app = make_app(MFA_REQUIRED="admins")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://localhost:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = base  # the relying party: id "localhost", this origin
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join(5)


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A tab with a virtual security key plugged in; any console error fails the test."""
    console: list[str] = []
    context = browser.new_context(base_url=base_url)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    cdp = context.new_cdp_session(tab)
    cdp.send("WebAuthn.enable")
    authenticator = {
        "protocol": "ctap2", "transport": "usb", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }  # fmt: skip
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": authenticator})
    yield tab
    context.close()
    assert [line for line in console if line.startswith(("error", "pageerror"))] == []


def password(page: Page, name: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()


def test_an_admin_registers_a_passkey_signs_in_with_it_and_removes_it(page: Page):
    password(page, "admin")
    expect(page).to_have_url("/account/mfa")  # MFA_REQUIRED=admins: enrol before anything else
    expect(page.get_by_text("Set up a second factor before you continue")).to_be_visible()
    expect(page.locator("figure.qr svg")).to_have_count(0)  # no app set-up started

    page.get_by_label("Name", exact=True).fill("test key")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_text("Your passkey is registered")).to_be_visible()
    expect(page.locator("ul.recovery-codes li")).to_have_count(10)
    expect(page.get_by_label("Name of passkey test key")).to_have_value("test key")

    page.get_by_label("Name of passkey test key").fill("desk key")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_label("Name of passkey desk key")).to_have_value("desk key")
    page.goto("/admin/users")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()  # enrolled: the way is open

    page.get_by_role("button", name="Sign out").click()
    password(page, "admin")
    expect(page).to_have_url("/login/mfa?next=/")
    page.goto("/admin/users")
    expect(page).to_have_url("/login/mfa")  # half signed in: nothing else
    page.get_by_role("button", name="Use a passkey").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.goto("/account/mfa")
    expect(page.locator("#passkeys-heading + p + div td").nth(2)).not_to_have_text("never")  # last used
    page.get_by_role("button", name="Remove passkey desk key").click()
    expect(page.get_by_text("You have no passkeys.")).to_be_visible()
    page.goto("/admin/users")
    expect(page).to_have_url("/account/mfa")  # no second factor left: enrol again first
