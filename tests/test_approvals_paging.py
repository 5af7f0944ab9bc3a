"""The /approvals page pages each list with the API's cursor: nothing beyond the first 50 is lost.

Real app over HTTP, both engines (the keyset order and the cursor's time comparison are the
database's). ``staff`` asks for more than a page of requests that ``other`` (a lead) may decide;
``other`` asks for more than a page of its own, so ``other``'s page has two long lists that each
page on their own. The links are followed as a browser would: plain hrefs, no JavaScript.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import seed_session
from tests.test_approvals import accounts_id, approval_app, ask, catalogue_path, token  # noqa: F401  (fixtures)
from tests.test_i18n import GERMAN, compiled_catalogues  # noqa: F401  (the .mo must be current)
from tests.test_i18n_staff import main
from tests.untranslated import untranslated, visible_text

pytestmark = pytest.mark.both_engines

RUN_ID = r"/runs/([0-9a-f-]{36})"


def section(page: str, heading: str) -> str:
    """One list's card: from its heading to the end of its section."""
    match = re.search(rf'<section[^>]*aria-labelledby="{heading}">(.*?)</section>', page, re.S)
    assert match, f"no section {heading}"
    return match.group(1)


def listed(page: str, heading: str) -> list[str]:
    return re.findall(RUN_ID, section(page, heading))


def link(page: str, heading: str, text: str) -> str | None:
    """The href of the link ``text`` in one list's card, as a browser would follow it."""
    match = re.search(rf'<a href="([^"]*)"[^>]*>{re.escape(text)}</a>', section(page, heading))
    return htmllib.unescape(match.group(1)) if match else None


def get(client, url: str, headers: dict[str, str] | None = None) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


@dataclass
class Crowd:
    app: Flask
    browser: FlaskClient  # signed in as other
    waiting: list[str]  # for other's decision, newest first
    mine: list[str]  # other's own requests, newest first


@pytest.fixture
def crowded(approval_app):  # noqa: F811  (the fixture imported above)
    """61 requests by staff waiting for other, and 52 of other's own: newest first, as each list shows them."""
    app = approval_app
    client = app.test_client()
    staff, other = token(app, "staff"), token(app, "other")
    waiting = [ask(client, staff, "purge", {"queue": "orders"}) for _ in range(61)]
    mine = [ask(client, other, "purge-two") for _ in range(52)]
    browser = app.test_client()
    seed_session(app, browser, accounts_id(app, "other"))
    return Crowd(app, browser, waiting[::-1], mine[::-1])


def test_an_approver_sees_fifty_then_the_rest_in_order_none_twice_none_missing(crowded):
    browser, waiting = crowded.browser, crowded.waiting
    first = get(browser, "/approvals")
    assert listed(first, "waiting-heading") == waiting[:50]
    assert "50 requests on this page, newest first." in visible_text(section(first, "waiting-heading"))
    assert link(first, "waiting-heading", "Newest requests") is None
    older = link(first, "waiting-heading", "Older requests")
    assert older is not None and older.startswith("/approvals?") and older.endswith("#waiting-heading")
    # The page's cursor is the API's: the same next_cursor a client paging /api/v1/approvals gets.
    api = crowded.app.test_client().get("/api/v1/approvals", headers=token(crowded.app, "other")).get_json()
    assert [item["id"] for item in api["items"]] == waiting[:50]
    assert parse_qs(urlsplit(older).query) == {"waiting_cursor": [api["next_cursor"]]}

    second = get(browser, older)
    assert listed(second, "waiting-heading") == waiting[50:]
    assert "11 requests on this page, newest first." in visible_text(section(second, "waiting-heading"))
    assert link(second, "waiting-heading", "Older requests") is None  # the end: no empty third page
    assert link(second, "waiting-heading", "Newest requests") == "/approvals#waiting-heading"
    assert listed(first, "waiting-heading") + listed(second, "waiting-heading") == waiting


def test_my_requests_page_on_their_own_and_each_link_keeps_the_other_lists_place(crowded):
    browser, waiting, mine = crowded.browser, crowded.waiting, crowded.mine
    first = get(browser, "/approvals")
    assert listed(first, "requested-heading") == mine[:50]
    waiting_two = get(browser, link(first, "waiting-heading", "Older requests"))
    assert listed(waiting_two, "requested-heading") == mine[:50]  # moving one list left the other

    both_two = get(browser, link(waiting_two, "requested-heading", "Older requests"))
    assert listed(both_two, "waiting-heading") == waiting[50:]  # still on its second page
    assert listed(both_two, "requested-heading") == mine[50:]
    assert "2 requests on this page, newest first." in visible_text(section(both_two, "requested-heading"))

    back = get(browser, link(both_two, "waiting-heading", "Newest requests"))
    assert listed(back, "waiting-heading") == waiting[:50]
    assert listed(back, "requested-heading") == mine[50:]
    assert listed(get(browser, link(back, "requested-heading", "Newest requests")), "requested-heading") == mine[:50]


@pytest.mark.parametrize("field", ["waiting_cursor", "requested_cursor"])
def test_a_cursor_this_page_never_gave_is_a_400_naming_it_and_showing_nothing_else(crowded, field):
    browser = crowded.browser
    older = link(get(browser, "/approvals"), "waiting-heading", "Older requests")
    good = re.search(r"waiting_cursor=([^&#]*)", older).group(1)
    tampered = [
        "garbage",
        good[:-3],  # cut short
        good.replace("%7C", "%7Cnot-a-run-"),  # the run id edited
        "2026-13-45T99:00:00Z%7C" + "0" * 36,  # a time that is none
        "9999-12-31T23:59:59-23:59%7C00000000-0000-4000-8000-000000000000",  # past the calendar in UTC
        "%00%7C%ff",
    ]
    for value in tampered:
        response = browser.get(f"/approvals?{field}={value}")
        page = response.get_data(as_text=True)
        assert response.status_code == 400, (value, response.status_code)
        assert response.mimetype == "text/html"
        assert field in visible_text(main(page)), page
        assert "Traceback" not in page and "ValueError" not in page and "cursor: malformed" not in page
        assert not re.search(RUN_ID, main(page))  # no request of anyone's on the refusal


def test_the_paged_lists_speak_german(crowded):
    browser = crowded.browser
    first = get(browser, "/approvals", GERMAN)
    text = visible_text(main(first))
    assert "50 Anfragen auf dieser Seite, neueste zuerst." in text and "Ältere Anfragen" in text
    assert untranslated(main(first), "de") == []
    second = get(browser, link(first, "waiting-heading", "Ältere Anfragen"), GERMAN)
    assert "11 Anfragen auf dieser Seite, neueste zuerst." in visible_text(main(second))
    assert "Neueste Anfragen" in visible_text(main(second)) and untranslated(main(second), "de") == []
    refused = browser.get("/approvals?waiting_cursor=garbage", headers=GERMAN)
    assert refused.status_code == 400
    said = visible_text(main(refused.get_data(as_text=True)))
    assert "Der Parameter waiting_cursor ist keine Position" in said
    assert untranslated(main(refused.get_data(as_text=True)), "de") == []
