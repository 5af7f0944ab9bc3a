"""Issue 23's main test: every page of the UI sweep's enumeration, rendered in German, shows no English.

The pages are the UI sweep's (``tests/browser/ui_sweep_pages.py``: every GET page route of the
URL map, who opens it and its URL from the seeded data), opened with the Flask test client as
signed out, half signed in (the second sign-in step), staff and admin with ``Accept-Language: de``.
Each page must say ``<html lang="de">`` and show no string of the message catalogue in English
(``tests/untranslated.py``; the command catalogue's own English texts are data, not messages). A page route added later joins by joining the sweep
(``test_the_sweep_covers_every_page_route`` fails until it does).
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.browser import test_web_browser as web
from tests.browser.ui_sweep_pages import SIGNED_OUT, VISITS, Visit, seed
from tests.browser.webcat import grant_staff
from tests.conftest import PASSWORDS, login_response, seed_session
from tests.untranslated import untranslated

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
HALF_SIGNED_IN = "half-signed-in"
# The pages whose every string is this branch's (sign-in, its second step, the invite, the error page).
CORE_PAGES = {"login", "invite", "login-mfa", "run-unknown"}

# The UI sweep's app, by name: the web catalogue and its data source (no server: the test client opens the pages).
app = web.app


@pytest.fixture
def seeds(app: Flask, users) -> dict[str, str]:
    grant_staff(app)
    return seed(app)


def browser_of(app: Flask, role: str, users) -> FlaskClient:
    """A test client as the sweep's role: signed out, half signed in (``other`` has a second factor), staff, admin."""
    client = app.test_client()
    if role == HALF_SIGNED_IN:
        answer = login_response(client, "other", PASSWORDS["other"])
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login/mfa")
    elif role != SIGNED_OUT:
        seed_session(app, client, users[role].id)
    return client


def german_pages(app: Flask, users, seeds: dict[str, str]) -> list[tuple[Visit, str, str]]:
    """(visit, url, html) for every visit of the enumeration, opened in German; a wrong status fails here."""
    clients: dict[str, FlaskClient] = {}
    pages = []
    for visits in VISITS.values():
        for visit in visits:
            client = clients.setdefault(visit.role, browser_of(app, visit.role, users))
            url = visit.url(seeds)
            response = client.get(url, headers=GERMAN)
            if visit.redirects_to:
                assert response.status_code in (301, 302, 303, 308), f"{visit.role} {url}: {response.status_code}"
                assert response.headers["Location"].endswith(visit.redirects_to), url
                continue
            assert response.status_code == visit.status, f"{visit.role} {url}: {response.status_code}"
            pages.append((visit, url, response.get_data(as_text=True)))
    return pages


def catalogue_texts(app: Flask) -> set[str]:
    """The command catalogue's English texts (titles, descriptions, categories, parameter names, labels, help,
    choices): data the pages show as the catalogue says them (a catalogue may carry German, this one does not)."""
    from gateway.catalogue.switches import current_catalogue

    texts: set[str] = set()
    with app.app_context():
        for command in current_catalogue().commands.values():
            texts |= {str(command.title), str(command.description), str(command.category)}
            for name, param in command.params.items():
                texts |= {name, name.replace("_", " ").capitalize(), str(param.help), str(param.label or "")}
                texts |= {str(choice) for choice in param.choices or ()}
    return {text for text in texts if text}


def page_language(html: str) -> str | None:
    match = re.search(r"<html[^>]*\slang=\"([^\"]*)\"", html)
    return match.group(1) if match else None


def test_every_page_is_german_by_its_lang_header_and_menu(app, users, seeds):
    """``<html lang="de">`` and a German header on every page; the sign-in, invite, second-step and error pages
    entirely German; the status badges and the ages written for readers without JavaScript in German."""
    pages = german_pages(app, users, seeds)
    data = catalogue_texts(app)
    assert {visit.role for visit, _, _ in pages} == {SIGNED_OUT, HALF_SIGNED_IN, "staff", "admin"}
    problems = []
    for visit, url, html in pages:
        where = f"{visit.role} {url}"
        if page_language(html) != "de":
            problems.append(f"{where}: <html lang={page_language(html)!r}>")
        if visit.role in ("staff", "admin") and not all(
            word in html for word in (">Übersicht</a>", ">Meine Läufe</a>", ">Abmelden</button>", "Zum Inhalt springen")
        ):
            problems.append(f"{where}: the header is not German")
        if visit.name in CORE_PAGES and (left := untranslated(html, "de", ignore=data)):
            problems.append(f"{where}: English left: {left}")
        if visit.name == "my-runs" and 'data-status="succeeded">Erfolgreich</span>' not in html:
            problems.append(f"{where}: the status badge is not German")
        if (visit.role, visit.name) == ("staff", "dashboard") and not re.search(
            r'data-show="age"[^>]*>gerade eben</time>', html
        ):
            problems.append(f"{where}: the no-JavaScript age is not German")
    assert len(pages) >= sum(len(visits) for visits in VISITS.values()) - 1  # all but the redirect
    assert not problems, "\n".join(problems)


def test_no_page_shows_a_catalogue_string_untranslated_in_german(app, users, seeds):
    data = catalogue_texts(app)
    problems = [
        f"{visit.role} {url}: {left}"
        for visit, url, html in german_pages(app, users, seeds)
        if (left := untranslated(html, "de", ignore=data))
    ]
    assert not problems, "English left on German pages:\n" + "\n".join(problems)
