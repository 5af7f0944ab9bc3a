"""Keyboard only (issue 22, "How it is checked"): sign in, run a command with parameters, cancel a run,
grant a permission and find focus where it was, without a mouse: every step reaches its control with
Tab (never a click, never element.focus()) and acts with Enter, Space or typing. The real app on
127.0.0.1, Debian's Chromium via Playwright; fixtures are the staff UI tests'.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser import test_web_browser as web
from tests.conftest import PASSWORDS

pytestmark = pytest.mark.slow

app, base_url = web.app, web.base_url
console, expected_console, page = web.console, web.expected_console, web.page


def tab_to(page: Page, target: Locator, most: int = 60) -> None:
    """Press Tab until ``target`` has the focus (as a keyboard user would), failing after ``most`` presses."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{target} was not reached with {most} presses of Tab")


def type_into(page: Page, field: Locator, text: str) -> None:
    tab_to(page, field)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def sign_in_by_keyboard(page: Page, name: str) -> None:
    page.goto("/login")
    type_into(page, page.get_by_label("Username"), name)
    type_into(page, page.get_by_label("Password"), PASSWORDS[name])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def follow_link(page: Page, link: Locator) -> None:
    tab_to(page, link)
    page.keyboard.press("Enter")


def test_staff_signs_in_runs_a_command_with_parameters_and_cancels_a_run_by_keyboard(page: Page):
    sign_in_by_keyboard(page, "staff")
    follow_link(page, page.locator("main").get_by_role("link", name="Greet people"))
    type_into(page, page.get_by_label("Who"), "Ann Lee")
    type_into(page, page.get_by_label("Count"), "3")
    tab_to(page, page.get_by_label("Loud"))
    page.keyboard.press("Space")
    tab_to(page, page.get_by_role("button", name="Run", exact=True))
    page.keyboard.press("Enter")
    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(page.locator("main")).to_contain_text("hello Ann Lee 3 true")

    page.goto("/")
    follow_link(page, page.locator("main").get_by_role("link", name="Long sleep"))
    tab_to(page, page.get_by_role("button", name="Run", exact=True))
    page.keyboard.press("Enter")
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_visible()
    tab_to(page, cancel)
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_contain_text(re.compile("Cancellation requested|Cancelled"))
    for _ in range(40):  # the page reloads itself when the stream ends
        if page.locator("#run-status .badge").get_attribute("data-status") == "cancelled":
            break
        page.wait_for_timeout(250)
    else:
        page.reload()
    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "cancelled")


@pytest.mark.xfail(
    strict=True,
    reason="issue 22 item 5 (admin changes keep your place: anchor and focus, or fetch in place) is another helper's; "
    "remove this mark when it lands",
)
def test_an_admin_grants_a_permission_by_keyboard_and_focus_stays_on_that_control(page: Page):
    sign_in_by_keyboard(page, "admin")
    page.goto("/admin/permissions")
    grant = page.get_by_role("button", name="Grant admin-only to ops")
    tab_to(page, grant, most=200)
    page.keyboard.press("Enter")
    revoke = page.get_by_role("button", name="Revoke admin-only from ops")
    expect(revoke).to_have_attribute("aria-pressed", "true")
    expect(revoke).to_be_focused(timeout=3000)
