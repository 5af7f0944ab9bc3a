"""Four eyes in a real browser: the requester and the approver each in a Chromium context of their own.

staff asks for ``purge`` (a secret among its params) through the form; other finds it on
/approvals, reads the exact params (the secret masked) in the confirmation, cannot approve
without ticking it, approves with a comment; the requester's page shows who approved, when
and why, and the output.  A second request is denied with a reason.  No page logs a console
error or a CSP violation, and the ledger verifies afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from gateway import audit
from gateway.platform.extensions import db
from tests.browser.conftest import new_tab, served
from tests.test_approvals import SECRET, approval_app, catalogue_path  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def base_url(approval_app) -> Iterator[str]:  # noqa: F811
    with served(approval_app) as base:
        yield base


@pytest.fixture
def person(browser: Browser, base_url: str) -> Iterator:
    """``person("staff")``: a signed-in page in a browser context of its own; console errors fail the test."""
    contexts, console = [], []

    def sign_in(name: str) -> Page:
        context, page = new_tab(browser, base_url, console, name)
        contexts.append(context)
        page.goto("/login")
        page.get_by_label("Username").fill(name)
        page.get_by_label("Password").fill(f"{name}-password-123")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        return page

    yield sign_in
    for context in contexts:
        context.close()
    problems = [line for line in console if " error: " in line or "pageerror" in line or "Content Security" in line]
    assert not problems, problems


def test_a_request_is_approved_and_another_denied_by_a_second_person(person, approval_app):  # noqa: F811
    requester, approver = person("staff"), person("other")

    requester.goto("/commands/purge")
    expect(requester.locator("#needs-approval")).to_contain_text("1 approver from leads")
    requester.get_by_label("queue").select_option("orders")
    requester.get_by_label("token").fill(SECRET)
    requester.get_by_role("button", name="Request approval").click()
    expect(requester.locator("#run-status")).to_contain_text("Awaiting approval")
    expect(requester.get_by_role("button", name="Withdraw request")).to_be_visible()
    expect(requester.locator("#approve-button")).to_have_count(0)
    run_url = requester.url

    approver.get_by_role("link", name="Approvals").click()
    approver.locator("#waiting").get_by_role("link", name="Purge a queue").click()
    confirmation = approver.locator("#confirm-params")
    expect(confirmation).to_contain_text("orders")
    expect(confirmation).to_contain_text("*** (secret, not shown)")
    assert SECRET not in approver.content()
    shot(approver, "approval-decision")
    approver.get_by_label("Comment").fill("checked with on-call")
    approver.locator("#approve-button").click()  # the confirmation is not ticked: the browser holds the form
    expect(approver.locator("#run-status")).to_contain_text("Awaiting approval")
    approver.get_by_label("I checked the parameters above").check()
    approver.locator("#approve-button").click()
    expect(approver.locator("#decisions")).to_contain_text("other approved")  # the page may reload as the run ends
    expect(approver.locator("#approve-button")).to_have_count(0)

    requester.goto(run_url)
    expect(requester.locator("#run-status")).to_contain_text("Succeeded")
    expect(requester.locator("#decisions")).to_contain_text("other approved")
    expect(requester.locator("#decisions")).to_contain_text("checked with on-call")
    expect(requester.locator("#output")).to_contain_text("purged orders token")
    assert SECRET not in requester.content()

    requester.goto("/commands/purge")
    requester.get_by_label("queue").select_option("mails")
    requester.get_by_label("token").fill(SECRET)
    requester.get_by_role("button", name="Request approval").click()
    second = requester.url
    approver.goto("/approvals")
    approver.locator("#waiting").get_by_role("link", name="Purge a queue").click()
    approver.get_by_label("Comment").fill("not during the sale")
    approver.locator("#deny-button").click()  # denying needs no tick
    expect(approver.locator("#run-status")).to_contain_text("Denied")
    requester.goto(second)
    expect(requester.locator("#run-status")).to_contain_text("Denied")
    expect(requester.locator("#decisions")).to_contain_text("not during the sale")
    requester.goto("/approvals")
    expect(requester.locator("#requested")).to_contain_text("Denied")
    expect(requester.locator("#requested")).to_contain_text("Succeeded")
    shot(requester, "approvals")

    with approval_app.app_context():
        assert audit.verify(db.session(), audit.Keyring.from_config(approval_app.config)).ok
        db.session.remove()
