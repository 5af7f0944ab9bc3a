"""The header's Theme select in a real browser: System (the default) follows the operating system's setting
live and forgets a stored choice; Light and Dark are remembered by this browser across pages and tabs.

The phone width and keyboard-only use are in ``test_ui_sweep`` (with the phone menu); the axe sweep there
checks the select in both themes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser import test_web_browser as web

# The staff UI tests' fixtures, by name: the server on SQLite.
app, base_url = web.app, web.base_url

KEY = "gateway-theme"
BACKGROUND = "getComputedStyle(document.body).backgroundColor"
LIGHT_BG, DARK_BG = "rgb(245, 246, 248)", "rgb(17, 22, 29)"  # gateway.css --bg


@pytest.fixture
def dark_system(browser: Browser, base_url: str) -> Iterator[tuple[BrowserContext, Page]]:
    """A browser whose operating system is set to dark."""
    context = browser.new_context(base_url=base_url, color_scheme="dark", viewport={"width": 375, "height": 812})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield context, tab
    context.close()


def stored(tab: Page) -> str | None:
    return tab.evaluate(f"localStorage.getItem({KEY!r})")


@pytest.mark.slow
def test_without_a_choice_the_page_follows_the_system_and_a_choice_overrides_it(dark_system):
    _, tab = dark_system
    tab.goto("/login")
    theme = tab.get_by_role("combobox", name="Theme")
    expect(theme).to_have_value("system")
    assert tab.evaluate("document.documentElement.hasAttribute('data-theme')") is False
    assert tab.evaluate(BACKGROUND) == DARK_BG
    assert stored(tab) is None

    theme.select_option("light")  # against the system's dark
    expect(tab.locator("html")).to_have_attribute("data-theme", "light")
    assert tab.evaluate(BACKGROUND) == LIGHT_BG
    assert stored(tab) == "light"
    assert tab.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")


@pytest.mark.slow
def test_choosing_system_forgets_the_choice_and_follows_a_change_of_the_system_without_a_reload(dark_system):
    context, tab = dark_system
    tab.goto("/login")
    theme = tab.get_by_role("combobox", name="Theme")
    theme.select_option("dark")
    tab.goto("/login?next=/runs")  # another page: the choice came along
    expect(theme).to_have_value("dark")
    expect(tab.locator("html")).to_have_attribute("data-theme", "dark")
    assert stored(tab) == "dark"

    tab.emulate_media(color_scheme="light")  # the choice wins over the system's light
    assert tab.evaluate(BACKGROUND) == DARK_BG

    theme.select_option("system")
    expect(tab.locator("html")).not_to_have_attribute("data-theme", "dark")
    assert tab.evaluate("document.documentElement.hasAttribute('data-theme')") is False
    assert stored(tab) is None, "System removes the stored choice"
    assert tab.evaluate(BACKGROUND) == LIGHT_BG

    tab.evaluate("window.stillThisPage = true")  # a reload would drop it
    tab.emulate_media(color_scheme="dark")  # the operating system switches while the page is open
    expect(tab.locator("body")).to_have_css("background-color", DARK_BG)
    tab.emulate_media(color_scheme="light")
    expect(tab.locator("body")).to_have_css("background-color", LIGHT_BG)
    assert tab.evaluate("window.stillThisPage") is True

    second = context.new_page()  # a new page of the same browser: still System
    second.goto("/login")
    expect(second.get_by_role("combobox", name="Theme")).to_have_value("system")
    assert second.evaluate("document.documentElement.hasAttribute('data-theme')") is False
    theme.select_option("dark")  # a choice in one tab reaches the other open one
    expect(second.locator("html")).to_have_attribute("data-theme", "dark")
    expect(second.get_by_role("combobox", name="Theme")).to_have_value("dark")


@pytest.mark.slow
def test_the_stored_choice_applies_before_the_body_exists(dark_system):
    """No flash of the system's colours: theme.js sets html[data-theme] from <head>, before the parser reaches
    <body> (what a deferred script, or one at the end of the body, would not do)."""
    context, tab = dark_system
    context.add_init_script(
        f"""localStorage.setItem({KEY!r}, "light");
const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function (name, value) {{
  if (this === document.documentElement && name === "data-theme" && !window.themeSet) {{  // the first time
    window.themeSet = {{ value: value, bodyExisted: document.body !== null }};
  }}
  return setAttribute.call(this, name, value);
}};"""
    )
    tab.goto("/login")
    assert tab.evaluate("window.themeSet") == {"value": "light", "bodyExisted": False}
    assert tab.evaluate(BACKGROUND) == LIGHT_BG
