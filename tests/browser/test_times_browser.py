"""Times people read and the sign-in edges, in a real browser set to another zone (Chromium,
Europe/Berlin, British English).

The shared time display: a moment shows the reader's local time, its title holds local time
(naming the zone) and UTC, an age reads "5 minutes ago". The audit filters: the pickers show
and take local time while the query string carries UTC, and a quick range fills them in the
reader's zone. The invite page names the user (looked up with the fragment's token) and the
sign-in form is pre-filled after; a form sent after the session ended signs in and returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from gateway import audit
from gateway.db.units import write_transaction
from gateway.identity import accounts, sessions
from tests.browser import test_web_browser as web
from tests.browser.conftest import new_tab
from tests.browser.test_web_browser import shot, sign_in
from tests.conftest import PASSWORDS

pytestmark = pytest.mark.slow

app, base_url, console = web.app, web.base_url, web.console
ZONE = "Europe/Berlin"


@pytest.fixture
def page(browser: Browser, base_url: str, console: list[str]) -> Iterator[Page]:
    """A browser in Berlin reading British English; console errors (CSP included) fail the test."""
    context, tab = new_tab(browser, base_url, console, timezone_id=ZONE, locale="en-GB")
    yield tab
    context.close()
    problems = [line for line in console if line.startswith(("error", "pageerror")) or "Content Security" in line]
    assert not problems, problems


def plain(text: str) -> str:
    """Intl's narrow and non-breaking spaces as plain ones."""
    return re.sub(r"[\u202f\u00a0]", " ", text)


def medium(moment: datetime) -> str:
    """How Intl writes a moment in the page's language (``lang="en"``), dateStyle and timeStyle medium."""
    hour = moment.hour % 12 or 12
    return f"{moment:%b} {moment.day}, {moment.year}, {hour}:{moment:%M:%S} {'AM' if moment.hour < 12 else 'PM'}"


def test_a_moment_shows_local_time_with_local_and_utc_in_its_title_and_an_age(page: Page, app):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with app.app_context(), write_transaction() as tx:
        seq = audit.append("admin.group_created", session=tx, actor={"id": None, "name": "carol"}, at=at,
                           outcome="ok", detail={"group": "oncall"}).seq  # fmt: skip
    sign_in(page, "admin")
    page.goto(f"/admin/audit/{seq}")
    shown = page.locator("dl.facts time[data-show=local]")
    local = medium(at.astimezone(ZoneInfo(ZONE)))
    expect(shown).not_to_have_text(re.compile("UTC"))  # the script rewrote the server's UTC text
    assert plain(shown.inner_text()) == local
    title = plain(shown.get_attribute("title") or "")
    assert title == f"{local} ({ZONE})\n{medium(at)} UTC"
    expect(page.locator("dl.facts time[data-show=age]")).to_have_text("5 minutes ago")
    expect(page.locator("p.lead")).to_have_text("Group created: created group oncall")
    shot(page, "admin-audit-event-berlin")


def test_audit_pickers_speak_local_time_and_send_utc(page: Page, app):
    sign_in(page, "admin")
    page.goto("/admin/audit?since=2026-01-15T10:00:00Z&actor=carol")
    since = page.get_by_label(re.compile("^From"))
    expect(since).to_have_value("2026-01-15T11:00")  # 10:00 UTC is 11:00 in Berlin in winter
    expect(page.locator("label[for=f-since]")).to_contain_text(f"your time, {ZONE}")
    since.fill("2026-07-01T09:30")  # summer: two hours ahead of UTC
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"since="))
    args = parse_qs(urlsplit(page.url).query)
    assert args["since"] == ["2026-07-01T07:30:00Z"] and args["actor"] == ["carol"]
    expect(page.get_by_label(re.compile("^From"))).to_have_value("2026-07-01T09:30")

    page.get_by_role("link", name="Today").click()
    page.wait_for_url(lambda url: "2026-07-01" not in url)
    args = parse_qs(urlsplit(page.url).query)
    midnight = datetime.now(ZoneInfo(ZONE)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert args["since"] == [midnight.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert args["actor"] == ["carol"] and "until" not in args
    expect(page.locator("#match-count")).to_contain_text("match")
    shot(page, "admin-audit-today-berlin")


def test_the_invite_page_names_the_user_and_sign_in_is_prefilled(page: Page, app):
    with app.app_context():
        _, invite = accounts.create_invited_user("newbie", actor={"id": None, "name": "cli:test"})
    page.goto(f"/invite#{invite.token}")
    expect(page.locator("#invite-name")).to_have_text("newbie")
    shot(page, "invite-names-the-user")
    assert invite.token not in page.url
    for label in ("New password (at least 12 characters)", "New password again"):
        page.get_by_label(label).fill("chosen-by-newbie-2026")
    page.get_by_role("button", name="Set password").click()
    expect(page.locator(".flash")).to_contain_text("Sign in as newbie.")
    expect(page.get_by_label("Username")).to_have_value("newbie")
    shot(page, "sign-in-after-invite")


def test_a_form_sent_after_the_session_ended_signs_in_and_returns(page: Page, app):
    sign_in(page, "admin")
    page.goto("/admin/audit?actor=carol")
    with app.app_context(), write_transaction():
        sessions.revoke_all_for(accounts.get_user("admin").id)
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator(".flash")).to_have_text("Your session ended; sign in again.")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORDS["admin"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/admin/audit\?actor=carol$"))
