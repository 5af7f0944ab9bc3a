"""Languages in a real browser: the page's language from the browser's, the switch, the scripts' strings.

The compiled catalogues come from ``make translations`` (``make test`` builds them).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import served

pytestmark = pytest.mark.slow


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
        assert tab.evaluate("GatewayI18n.text('copy.copied', 'Copied')") == "Copied"
        context.close()
    assert console == []
