"""The admin pages in a real browser (Debian's Chromium via Playwright, the real app on 127.0.0.1, SQLite).

Two people, two browser contexts (separate cookie jars): an admin grants a
command to a group by clicking its cell in the permission matrix; a staff
member of that group, who could not see it before, signs in, sees it and
runs it; the admin then finds that very run in the audit viewer by command
and actor and opens its detail. And the invite flow: the admin creates a user
with an invite link, the new user opens the link (no sign-in), chooses a
password and signs in with it. Fixtures (server, browser, console-error
check) are the staff UI tests'.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import test_web_browser as web
from tests.browser.test_web_browser import shot, sign_in

pytestmark = pytest.mark.slow

# The staff UI tests' fixtures, by name: the server on SQLite, the browser, the console-error check.
app, base_url = web.app, web.base_url
console, expected_console, page = web.console, web.expected_console, web.page

NEW_PASSWORD = "chosen-by-newbie-2026"


@pytest.fixture
def second_page(browser: Browser, base_url: str, console: list[str]) -> Iterator[Callable[[], Page]]:
    """Another person's browser: a fresh context each call, console errors collected like ``page``'s."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(base_url=base_url)
        contexts.append(context)
        tab = context.new_page()
        tab.set_default_timeout(15_000)
        tab.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        tab.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        return tab

    yield open_page
    for context in contexts:
        context.close()


def test_a_grant_clicked_in_the_matrix_lets_staff_run_it_and_the_admin_finds_the_run(page: Page, second_page):
    admin = page
    sign_in(admin, "admin")
    staff = second_page()
    sign_in(staff, "staff")
    expect(staff.locator("main")).not_to_contain_text("Admins only")

    admin.goto("/admin/permissions")
    cell = admin.get_by_role("button", name="Grant admin-only to ops")
    expect(cell).to_have_attribute("aria-pressed", "false")
    cell.click()
    expect(admin.locator(".flash")).to_be_visible()
    expect(admin.get_by_role("button", name="Revoke admin-only from ops")).to_have_attribute("aria-pressed", "true")
    shot(admin, "admin-permissions-granted")

    staff.goto("/")
    staff.locator("main").get_by_role("link", name="Admins only").click()
    staff.get_by_role("button", name="Run", exact=True).click()
    expect(staff.locator("#run-status .badge")).to_have_attribute("data-status", "succeeded", timeout=20_000)
    run_id = re.search(r"/runs/([0-9a-f-]{36})", staff.url).group(1)

    admin.goto("/admin/audit")
    admin.get_by_label("Command").fill("admin-only")
    admin.get_by_label("Actor").fill("staff")
    admin.get_by_role("button", name="Search").click()
    rows = admin.locator("table.data tbody tr")
    finished = rows.filter(has_text="run.finished")
    expect(finished).to_have_count(1)
    expect(rows.filter(has_text="run.started")).to_have_count(1)
    expect(rows).to_have_count(2)  # nothing else by staff on admin-only: the filter holds
    expect(finished).to_contain_text(run_id[:8])
    shot(admin, "admin-audit-filtered")

    finished.locator("td.num a").click()
    expect(admin.get_by_role("heading", level=1)).to_contain_text("run.finished")
    facts = admin.locator("dl.facts")
    expect(facts).to_contain_text("staff")
    expect(facts).to_contain_text("succeeded")
    expect(facts.get_by_role("link", name=run_id)).to_be_visible()
    shot(admin, "admin-audit-event")
    facts.get_by_role("link", name=run_id).click()
    expect(admin.locator("#run-status .badge")).to_have_attribute("data-status", "succeeded")


def test_an_invited_user_sets_a_password_through_the_link_and_signs_in(
    page: Page, second_page, expected_console: list[str]
):
    expected_console.append("the server responded with a status of 400 (BAD REQUEST)")  # the reused link, at the end
    admin = page
    sign_in(admin, "admin")
    admin.goto("/admin/users")
    admin.get_by_label("Username").fill("newbie")
    admin.get_by_role("radio", name=re.compile("Send an invite")).check()
    admin.get_by_role("button", name="Create user").click()
    link = admin.locator("#invite-link").input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/invite#[A-Za-z0-9_-]{43}", link), link
    token = link.split("#", 1)[1]
    shot(admin, "admin-invite-link")
    admin.reload()
    expect(admin.locator("#invite-link")).to_have_count(0)  # shown once: a refresh does not show it again
    expect(admin.locator("main")).to_contain_text("invited, no password yet")

    newbie = second_page()
    newbie.goto(link)
    # The script took the code from the fragment, hid the field, and removed the code from the address bar.
    expect(newbie.get_by_role("heading", name="Choose your password")).to_be_visible()
    expect(newbie.locator("#invite-code")).to_be_hidden()
    assert token not in newbie.url
    newbie.get_by_label("New password (at least 12 characters)").fill(NEW_PASSWORD)
    newbie.get_by_label("New password again").fill(NEW_PASSWORD)
    shot(newbie, "invite-form")
    newbie.get_by_role("button", name="Set password").click()
    expect(newbie.locator(".flash")).to_contain_text("Your password is set. Sign in as newbie.")
    newbie.get_by_label("Username").fill("newbie")
    newbie.get_by_label("Password").fill(NEW_PASSWORD)
    newbie.get_by_role("button", name="Sign in").click()
    expect(newbie.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(newbie.locator(".who")).to_have_text("newbie")

    # The same link again, in yet another browser: refused with a clear message.
    again = second_page()
    again.goto(link)
    again.get_by_label("New password (at least 12 characters)").fill("another-password-123")
    again.get_by_label("New password again").fill("another-password-123")
    again.get_by_role("button", name="Set password").click()
    expect(again.get_by_role("alert")).to_contain_text("already used")
