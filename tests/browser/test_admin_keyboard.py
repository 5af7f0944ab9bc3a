"""Keyboard only, in a real browser: no mouse anywhere (``page.keyboard``; ``goto`` stands for typing a URL).

An admin signs in by Tab and typing, runs a command with a parameter, cancels it, grants a
permission in the matrix and finds the focus back on the cell they pressed; revoking asks in a
dialog (Escape cancels and changes nothing), and the Undo in the flash grants it again, the
focus again on the cell. Fixtures (server, browser, console-error check) are the staff UI tests'.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
from playwright.sync_api import Page, expect

from tests.browser import test_web_browser as web
from tests.browser.test_web_browser import shot
from tests.conftest import PASSWORDS

pytestmark = pytest.mark.slow

base_url, console, expected_console, page = web.base_url, web.console, web.expected_console, web.page

CATALOGUE = textwrap.dedent(
    f"""
    commands:
      - name: nap
        title: Nap
        description: Sleeps for the given number of seconds.
        category: Tools
        kind: shell
        argv: ["{sys.executable}", "-u", "-c", "import sys, time; print('napping'); time.sleep(int(sys.argv[1]))", "{{seconds}}"]
        params:
          seconds: {{type: integer, min: 1, max: 120, default: 5, label: "Seconds"}}
        timeout: 150
    """
)


@pytest.fixture
def app(make_app, tmp_path):
    path = tmp_path / "keyboard-commands.yaml"
    path.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=path, RUN_HEARTBEAT_SECONDS=1)


def focused(page: Page) -> str:
    """The focused element, as ``tag#id[name]`` (what a keyboard user is on)."""
    return page.evaluate(
        "() => { const e = document.activeElement;"
        " return e ? `${e.tagName.toLowerCase()}#${e.id}[${e.getAttribute('name') || ''}]` : ''; }"
    )


def tab_to(page: Page, selector: str, limit: int = 250) -> None:
    """Press Tab until the element ``selector`` has the focus (fails after ``limit`` presses)."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement === document.querySelector(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}; stuck on {focused(page)}")


def cell(group: str, command: str) -> str:
    return f'[id="grant:{group}:{command}"]'


def test_sign_in_run_cancel_and_grant_without_a_mouse(page: Page):
    page.goto("/login")
    tab_to(page, "#username")
    page.keyboard.type("admin")
    tab_to(page, "#password")
    page.keyboard.type(PASSWORDS["admin"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    # A command with a parameter: change it, submit with Enter, cancel the run from the keyboard.
    page.goto("/commands/nap")
    tab_to(page, '[name="seconds"]')
    page.keyboard.press("Control+A")
    page.keyboard.type("90")
    page.keyboard.press("Enter")
    expect(page.locator("#cancel-form button")).to_be_visible()
    expect(page.locator("main")).to_contain_text("90")
    tab_to(page, "#cancel-form button")
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_contain_text("Cancel")
    # The run page follows the stream and reloads itself when the run has ended.
    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "cancelled", timeout=30_000)

    # Grant in the matrix: the page comes back on the same cell, with the focus on it.
    page.goto("/admin/permissions")
    tab_to(page, cell("ops", "nap"))
    page.keyboard.press("Enter")
    expect(page.locator(cell("ops", "nap"))).to_have_attribute("aria-pressed", "true")
    expect(page.locator(cell("ops", "nap"))).to_be_focused()
    assert page.url.endswith("#grant:ops:nap")
    shot(page, "keyboard-granted")

    # Revoking asks first, in a dialog: Escape changes nothing and gives the focus back.
    page.keyboard.press("Enter")
    dialog = page.locator("dialog.confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Really revoke nap from ops?")
    expect(dialog.get_by_role("button", name="Revoke")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator(cell("ops", "nap"))).to_be_focused()
    expect(page.locator(cell("ops", "nap"))).to_have_attribute("aria-pressed", "true")

    page.keyboard.press("Enter")
    expect(dialog.get_by_role("button", name="Revoke")).to_be_focused()
    # Asked again before the last answer's close event has run (a quick Escape, then Enter): the old
    # event must not close the new question. Both in one task here, so the event is surely still queued.
    page.evaluate(
        """form => { const box = document.querySelector('dialog.confirm-dialog');
                     box.close(); document.querySelector(form).requestSubmit(); }""",
        f"form:has({cell('ops', 'nap')})",
    )
    page.evaluate("() => new Promise(done => setTimeout(done, 100))")  # the queued close event has run
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Revoke")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(cell("ops", "nap"))).to_have_attribute("aria-pressed", "false")
    expect(page.locator(cell("ops", "nap"))).to_be_focused()
    expect(page.locator(".undo-flash")).to_contain_text("ops may no longer run nap.")
    shot(page, "keyboard-revoked-undo")

    # Undo from the keyboard: Shift+Tab back up to it, Enter; the grant returns, the focus on its cell.
    for _ in range(250):
        if page.evaluate("() => document.activeElement && document.activeElement.id === 'undo-button'"):
            break
        page.keyboard.press("Shift+Tab")
    expect(page.locator("#undo-button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(cell("ops", "nap"))).to_have_attribute("aria-pressed", "true")
    expect(page.locator(cell("ops", "nap"))).to_be_focused()
