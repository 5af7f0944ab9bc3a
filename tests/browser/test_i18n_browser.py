"""Languages in a real browser: the page's language from the browser's, the switch, the scripts' strings.

The compiled catalogues come from ``make translations`` (``make test`` builds them).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.browser import test_board_browser as board
from tests.browser.conftest import served
from tests.conftest import PASSWORDS

pytestmark = pytest.mark.slow

# The board's browser tests' fixtures, by name: a catalogue with a slow command, staff granted all.
app, base_url = board.app, board.base_url


def test_a_german_browser_gets_german_and_the_switch_changes_it_without_errors(browser: Browser, make_app):
    app = make_app()
    console: list[str] = []
    with served(app) as base:
        context = browser.new_context(base_url=base, locale="de-DE")
        tab = context.new_page()
        tab.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        tab.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        tab.set_viewport_size({"width": 375, "height": 740})
        tab.goto("/login")
        expect(tab.locator("html")).to_have_attribute("lang", "de")
        assert tab.evaluate("document.documentElement.scrollWidth") <= 375  # the switch fits a phone's top bar
        # The scripts' strings arrive in the page's language (gateway/i18n/scripts.py, static/i18n.js).
        assert tab.evaluate("GatewayI18n.text('copy.copied', 'Copied')") == "Kopiert"
        assert tab.evaluate("GatewayI18n.text('nothing.here', 'Only {n}', {n: 3})") == "Only 3"

        tab.select_option("#language-switch", "en")
        tab.get_by_role("button", name="Wechseln").click()
        expect(tab.locator("html")).to_have_attribute("lang", "en")
        assert tab.url.endswith("/login")
        # The new page's lang is there as soon as its HTML is; its deferred scripts run later.
        tab.wait_for_load_state("load")
        tab.wait_for_function("typeof GatewayI18n !== 'undefined'")
        assert tab.evaluate("GatewayI18n.text('copy.copied', 'Copied')") == "Copied"
        context.close()
    assert console == []


def test_a_live_run_in_a_german_browser_says_its_state_and_its_end_in_german(browser: Browser, base_url: str):
    """The live run page's script (gateway.js) writes the badge and the announcement from the server's words."""
    console: list[str] = []
    tab = board.open_tab(browser, base_url, console, locale="de-DE")
    tab.goto("/login")
    tab.get_by_label("Benutzername").fill("staff")
    tab.get_by_label("Passwort").fill(PASSWORDS["staff"])
    tab.get_by_role("button", name="Anmelden", exact=True).click()
    expect(tab).not_to_have_url(re.compile("/login"))
    tab.locator("#command-slow-two button[type=submit]").click()
    expect(tab).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    expect(tab.locator("html")).to_have_attribute("lang", "de")
    expect(tab.locator("#run-announce")).to_have_text("Der Lauf ist beendet: Erfolgreich.", timeout=20_000)
    expect(tab.locator("#run-status .badge")).to_have_text("Erfolgreich")
    tab.context.close()
    problems = [line for line in console if line.startswith(("error", "pageerror")) or "Content Security" in line]
    assert not problems, problems
