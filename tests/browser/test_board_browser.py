"""The dashboard's cards and the run page in a real browser (Chromium via Playwright, SQLite).

A card's Run says "Starting…" and cannot be pressed twice while its POST is on the way,
then the run page shows; the filter box narrows a long list and announces the count;
a live run's page turns into the finished page in place (no reload), the no-JavaScript
sentence hidden; the wrap toggle changes how the output wraps and is remembered; Copy
puts the output on the clipboard.  Screenshots go to ``test-artifacts/screenshots``.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import served
from tests.browser.test_web_browser import shot, sign_in
from tests.test_board import CATALOGUE, GRANTED, grant

pytestmark = pytest.mark.slow
PY = sys.executable
LONG_LINE = "wide " + "x" * 400

EXTRA = textwrap.indent(
    textwrap.dedent(
        f"""\
        - name: slow-two
          title: Slow two lines
          description: One line, a pause, a warning and a long line.
          category: Tools
          kind: shell
          argv: ["{PY}", "-u", "-c", "import sys, time; print('one'); time.sleep(2); print('two', file=sys.stderr); print({LONG_LINE!r})"]
        """
    ),
    "  ",
) + "".join(
    f"  - {{name: extra-{i}, title: Extra number {i}, description: Filler {i}., category: More, kind: shell, argv: ['true']}}\n"
    for i in range(5)
)
ALL_GRANTED = [*GRANTED, "slow-two", *(f"extra-{i}" for i in range(5))]  # 13 cards


@pytest.fixture
def app(make_app, tmp_path):
    path = tmp_path / "board-browser.yaml"
    path.write_text(CATALOGUE + EXTRA)
    return make_app(GATEWAY_COMMANDS_FILE=path, RUN_HEARTBEAT_SECONDS=1)


@pytest.fixture
def base_url(app, users) -> Iterator[str]:
    grant(app, ALL_GRANTED)
    with served(app) as base:
        yield base


@pytest.fixture
def console() -> list[str]:
    return []


def open_tab(browser: Browser, base_url: str, console: list[str], **options) -> Page:
    context = browser.new_context(base_url=base_url, **options)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    return tab


@pytest.fixture
def page(browser: Browser, base_url: str, console: list[str]) -> Iterator[Page]:
    """A fresh browser context; every console error (CSP violations included) fails the test."""
    tab = open_tab(browser, base_url, console)
    yield tab
    tab.context.close()
    problems = [line for line in console if line.startswith(("error", "pageerror")) or "Content Security" in line]
    assert not problems, problems


def finished_run_of(page: Page, command: str) -> None:
    """Start ``command`` from its card and wait on its run page until it has ended."""
    page.goto("/")
    page.locator(f"#command-{command}").get_by_role("button", name=re.compile("^Run")).click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    expect(page.locator('#run[data-live="0"]')).to_have_count(1)
    expect(page.locator("#output-facts")).to_have_count(1)


# --- the tests -----------------------------------------------------------------------------


def test_an_inline_run_says_starting_then_shows_the_run_page(page: Page):
    sign_in(page)
    # What the button shows while its POST is on the way, recorded as the form submits (after the
    # page's own handler) and kept across the navigation to the run page.
    page.evaluate(
        """window.addEventListener("submit", (event) => {
             const button = event.target.querySelector("button");
             sessionStorage.setItem("seen", JSON.stringify([button.textContent, button.disabled]));
           })"""
    )
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.post_data or "") if r.method == "POST" else None)
    page.locator("#command-hello").get_by_role("button", name="Run Say hello").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#output")).to_contain_text("hello")
    assert page.evaluate("JSON.parse(sessionStorage.getItem('seen'))") == ["Starting…", True]
    assert len(posts) == 1 and "csrf_token=" in posts[0]  # one POST, with its CSRF token
    page.go_back()
    expect(page.locator("#command-hello").get_by_role("button", name="Run Say hello")).to_be_enabled()


def test_the_filter_box_narrows_the_cards_and_announces_the_count(page: Page):
    sign_in(page)
    cards = page.locator(".command-card")
    expect(cards).to_have_count(13)
    box = page.get_by_label("Filter commands")
    box.fill("extra")
    expect(page.locator(".command-card:visible")).to_have_count(5)
    expect(page.locator("#command-filter-count")).to_have_text("5 of 13 commands shown")
    expect(page.locator("#command-filter-count")).to_have_attribute("aria-live", "polite")
    box.fill("second person")  # words of a description, in any card
    expect(page.locator(".command-card:visible")).to_have_count(1)
    expect(page.locator("#command-purge")).to_be_visible()
    expect(page.get_by_role("heading", name="More")).to_be_hidden()  # a category with no match hides
    box.fill("nothing like this")
    expect(page.locator(".command-card:visible")).to_have_count(0)
    expect(page.locator("#command-filter-none")).to_be_visible()
    shot(page, "board-filter-none")
    box.fill("")
    expect(page.locator(".command-card:visible")).to_have_count(13)


def test_a_live_run_turns_into_the_finished_page_in_place(page: Page):
    sign_in(page)
    page.locator("#command-slow-two").get_by_role("button", name=re.compile("^Run")).click()
    expect(page.locator("#output")).to_contain_text("one")
    expect(page.locator("#live-note")).to_contain_text("Output appears below as it arrives.")
    expect(page.locator("#live-note .no-js")).to_be_hidden()  # the reload sentence is for pages without JavaScript
    expect(page.locator("#output-legend")).to_be_hidden()  # nothing on stderr yet
    page.evaluate("window.__samePage = 1")
    expect(page.locator("#run-exit")).to_have_text("exit code 0 (success)", timeout=20_000)
    assert page.evaluate("window.__samePage") == 1  # updated in place, not reloaded
    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#run-ended time")).to_have_count(1)
    expect(page.locator("#run-duration")).not_to_have_text("—")
    expect(page.locator("#output-legend")).to_be_visible()  # error output came
    expect(page.locator("#run-announce")).to_have_text("The run has ended: Succeeded.")
    facts = page.locator("#output-facts")
    facts.locator("summary").click()
    expect(facts).to_contain_text("SHA-256")
    text = page.locator("#output").inner_text()
    assert [line for line in text.splitlines() if line] == ["one", "two", LONG_LINE]  # nothing twice
    shot(page, "run-finished-in-place")


def test_the_wrap_toggle_changes_the_output_and_is_remembered(page: Page, browser: Browser, base_url, console):
    sign_in(page)
    finished_run_of(page, "slow-two")
    output, toggle = page.locator("#output"), page.locator("#wrap-toggle")
    expect(toggle).to_have_attribute("aria-pressed", "true")  # a wide screen starts wrapped
    expect(output).to_have_css("white-space", "pre-wrap")
    assert page.evaluate(
        "document.getElementById('output').scrollWidth <= document.getElementById('output').clientWidth"
    )
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(output).to_have_css("white-space", "pre")
    assert page.evaluate(
        "document.getElementById('output').scrollWidth > document.getElementById('output').clientWidth"
    )
    page.reload()
    expect(page.locator("#wrap-toggle")).to_have_attribute("aria-pressed", "false")  # remembered by this browser
    run_url = page.url
    phone = open_tab(browser, base_url, console, viewport={"width": 390, "height": 800})
    sign_in(phone)
    phone.goto(run_url)
    expect(phone.locator("#wrap-toggle")).to_have_attribute("aria-pressed", "false")  # phones start unwrapped
    expect(phone.locator("#output")).to_have_css("white-space", "pre")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # the box scrolls, not the page
    shot(phone, "phone-run-unwrapped")
    phone.context.close()


def test_copy_puts_the_output_on_the_clipboard(browser: Browser, base_url, console):
    tab = open_tab(browser, base_url, console, permissions=["clipboard-read", "clipboard-write"])
    sign_in(tab)
    finished_run_of(tab, "slow-two")
    copy = tab.locator("#output-section button[data-copy]")  # its name changes to "Copied"
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert tab.evaluate("navigator.clipboard.readText()") == tab.locator("#output").text_content()
    with tab.expect_download() as download:
        tab.get_by_role("link", name="Download .txt").click()
    assert download.value.suggested_filename.startswith("slow-two-")
    assert Path(download.value.path()).read_text() == tab.locator("#output").text_content()
    tab.context.close()
    assert not [line for line in console if line.startswith(("error", "pageerror"))], console
