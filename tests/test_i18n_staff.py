"""The staff pages in German (issue 23): every page without catalogue strings left in English, plurals,
numbers per locale, catalogue texts in German, and a parameter's error German on the form while the
JSON API and the ledger's ``run.rejected`` keep the same error in English.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
import time

import pytest
from flask import render_template_string
from sqlalchemy import select

from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from gateway.platform.phrases import N_, N_counted, Phrase, on_page
from tests.conftest import csrf_token_from
from tests.test_i18n import GERMAN, compiled_catalogues, page_language  # noqa: F401  (the .mo must be current)
from tests.untranslated import untranslated, visible_text

PY = sys.executable
CATALOGUE = textwrap.dedent(
    f"""
    commands:
      - name: greet
        title: {{en: Greet people, de: Leute grüßen}}
        description: {{en: Prints a greeting., de: Gibt einen Gruß aus.}}
        category: {{en: Tools, de: Werkzeuge}}
        kind: shell
        argv: ["{PY}", "-c", "import sys; print('hello', sys.argv[1:])", "{{{{who}}}}", "{{{{count}}}}", "{{{{ratio}}}}"]
        params:
          who: {{type: string, required: true, pattern: "[A-Za-z]+", label: {{en: Who, de: Wer}},
                 help: {{en: Letters only., de: Nur Buchstaben.}}}}
          count: {{type: integer, min: 1, max: 5, default: 2, label: {{en: Count, de: Anzahl}}}}
          ratio: {{type: number, min: 0.5, max: 2.5, default: 1, label: {{en: Ratio, de: Verhältnis}}}}
          items: {{type: list, pattern: "[a-z]+", label: {{en: Items, de: Einträge}}}}
      - name: report
        title: {{en: Disk report, de: Plattenbericht}}
        category: {{en: Reports, de: Berichte}}
        kind: shell
        argv: ["echo", "disk ok"]
        dashboard: true
      - name: purge
        title: {{en: Purge caches, de: Caches leeren}}
        category: {{en: Tools, de: Werkzeuge}}
        kind: shell
        argv: ["echo", "purged"]
        approval: {{approvers: [leads], expires_minutes: 30}}
    """
)


@pytest.fixture
def app(make_app, tmp_path):
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    app = make_app(GATEWAY_COMMANDS_FILE=str(path))
    return app


@pytest.fixture
def staff(app, users, login):
    with app.app_context():
        groups.create_group("ops")
        groups.create_group("leads")
        for name in ("greet", "purge", "report"):
            groups.add_grant("ops", name)
        groups.add_member("ops", "staff")
        groups.add_member("leads", "other")
    return login("staff")


def german(client, path: str) -> str:
    response = client.get(path, headers=GERMAN)
    assert response.status_code == 200, path
    html = response.get_data(as_text=True)
    assert page_language(html) == "de", path
    return html


def submit(client, name: str, data: dict[str, str], headers=None):
    token = csrf_token_from(client.get(f"/commands/{name}", headers=headers).get_data(as_text=True))
    return client.post(f"/commands/{name}", data={"csrf_token": token, **data}, headers=headers)


def wait_done(app, run_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with app.app_context():
            status = db.session.scalar(select(Run.status).where(Run.id == run_id))
            db.session.remove()
        if status not in ("queued", "running"):
            return
        time.sleep(0.05)
    raise AssertionError("the run did not finish")


def rejected_details(app) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "run.rejected").order_by(AuditEvent.seq))
        details = [row.detail for row in rows]
        db.session.remove()
    return details


def main(html: str) -> str:
    """The page's own part (base.html's header and menu are the core translator's, checked by its sweep)."""
    match = re.search(r'<main id="main">(.*)</main>', html, re.S)
    assert match, "no <main>"
    return match.group(1)


def field_note(html: str, name: str) -> str:
    match = re.search(rf'<div id="param-{name}-note">(.*?)</div>', html, re.S)
    assert match, f"no note for {name}"
    return visible_text(match.group(1))


# --- a parameter's error: German on the form, English for the API and the ledger -------------------


def test_a_bad_value_is_german_next_to_its_field_and_english_in_the_ledger_and_the_api(app, staff):
    page = submit(staff, "greet", {"who": "Ann", "count": "9", "items": "ok\nBAD"}, headers=GERMAN)
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert "Bitte korrigieren Sie die unten markierten Felder." in html
    assert "Anzahl darf höchstens 5 sein." in field_note(html, "count")
    assert "Einträge Zeile 2: entspricht nicht dem verlangten Muster." in field_note(html, "items")
    assert "Eine ganze Zahl zwischen 1 und 5." in field_note(html, "count")
    assert untranslated(main(html), "de") == []

    [recorded] = rejected_details(app)
    assert recorded["message"] == "Some parameters are not valid."
    assert recorded["fields"] == {"count": "must be at most 5", "items[1]": "does not match the required pattern"}

    with app.app_context():
        secret = tokens.create_token(accounts.get_user("staff"), name="t", expires_days=1).secret
    api = app.test_client().post(
        "/api/v1/commands/greet/runs",
        json={"params": {"who": "Ann", "count": 9, "items": ["ok", "BAD"]}},
        headers={"Authorization": f"Bearer {secret}", **GERMAN},
    )
    assert api.status_code == 400
    error = api.get_json()["error"]
    assert error["message"] == "Some parameters are not valid."
    assert error["details"] == {"count": "must be at most 5", "items[1]": "does not match the required pattern"}
    assert rejected_details(app)[-1]["fields"] == error["details"]


def test_the_same_error_in_english_is_as_before(app, staff):
    html = submit(staff, "greet", {"who": "Ann", "count": "0"}).get_data(as_text=True)
    assert "Count must be at least 1." in field_note(html, "count")
    assert "A whole number between 1 and 5." in field_note(html, "count")


def test_a_message_is_its_english_text_and_the_page_translates_it_with_numbers_per_locale(app):
    bound = N_("must be at least %(min)s", min=0.5)
    counted = N_counted("needs at least %(num)s item", "needs at least %(num)s items", 2)
    assert isinstance(bound, Phrase) and bound == "must be at least 0.5" and counted == "needs at least 2 items"
    assert json.dumps({"x": bound}) == '{"x": "must be at least 0.5"}'  # what the API and the ledger write
    with app.test_request_context(headers=GERMAN):
        assert on_page(bound) == "muss mindestens 0,5 sein"
        assert on_page(counted) == "braucht mindestens 2 Einträge"
        assert on_page(N_counted("needs at least %(num)s item", "needs at least %(num)s items", 1)) == (
            "braucht mindestens 1 Eintrag"
        )
        assert on_page("a text from elsewhere") == "a text from elsewhere"
    with app.test_request_context():
        assert on_page(bound) == "must be at least 0.5"


# --- every staff page in German ------------------------------------------------------------------


def test_my_runs_counts_them_with_the_plural_of_the_page_language(app, staff):
    def run_greet() -> None:
        started = submit(staff, "greet", {"who": "Ann", "count": "1"})
        assert started.status_code == 303
        wait_done(app, started.headers["Location"].rsplit("/", 1)[-1])

    run_greet()
    assert "1 Lauf auf dieser Seite" in german(staff, "/runs")
    assert "1 run on this page" in staff.get("/runs").get_data(as_text=True)
    run_greet()
    run_greet()
    assert "3 Läufe auf dieser Seite" in german(staff, "/runs")
    assert "3 runs on this page" in staff.get("/runs").get_data(as_text=True)


def test_the_staff_pages_in_german_leave_nothing_in_english(app, staff, users, login):
    started = submit(staff, "greet", {"who": "Ann", "count": "3"}, headers=GERMAN)
    assert started.status_code == 303
    run_id = started.headers["Location"].rsplit("/", 1)[-1]
    wait_done(app, run_id)
    requested = submit(staff, "purge", {}, headers=GERMAN)
    assert requested.status_code == 303
    request_id = requested.headers["Location"].rsplit("/", 1)[-1]

    pages = {
        "/": ["Übersicht", "Meine Befehle", "Werkzeuge", "Leute grüßen", "Gibt einen Gruß aus.", "Braucht Freigabe"],
        "/commands/greet": ["Wer", "Nur Buchstaben.", "Eine Zahl zwischen 0,5 und 2,5.", "Ausführen"],
        "/commands/purge": ["Dieser Befehl braucht Freigabe: 1 Freigebender aus leads muss", "Freigabe anfordern"],
        f"/runs/{run_id}": ["Zustand", "Rückgabecode 0 (Erfolg)", "Mit diesen Parametern erneut ausführen"],
        f"/runs/{request_id}": ["Wartet auf 1 weitere Zustimmung", "Anfrage zurückziehen"],
        "/runs": ["Meine Läufe", "Alle Befehle", "Rückgabecode"],
        "/approvals": ["Freigaben", "Ihre Anfragen", "Caches leeren", "noch keine"],
        "/account": ["Konto", "Passwort ändern", "Sie haben keine API-Tokens.", "90 Tage", "1 Jahr"],
        "/account/mfa": ["Zwei-Faktor-Anmeldung", "Authenticator-App einrichten", "Sie haben keine Passkeys."],
    }
    for path, words in pages.items():
        html = german(staff, path)
        assert untranslated(main(html), "de") == [], path
        text = visible_text(main(html))
        for word in words:
            assert word in text, (path, word)

    approver = login("other")
    html = german(approver, f"/runs/{request_id}")
    assert "Ihre Entscheidung" in html and "Zustimmen" in html and untranslated(main(html), "de") == []
    assert "Wartet auf Ihre Entscheidung" in german(approver, "/approvals")


def test_the_approval_decision_flashes_german_and_the_page_says_who_decided(app, staff, login):
    requested = submit(staff, "purge", {}, headers=GERMAN)
    run_id = requested.headers["Location"].rsplit("/", 1)[-1]
    approver = login("other")
    token = csrf_token_from(approver.get(f"/runs/{run_id}").get_data(as_text=True))
    decided = approver.post(
        f"/runs/{run_id}/deny", data={"csrf_token": token, "comment": "not now"}, headers=GERMAN, follow_redirects=True
    )
    html = decided.get_data(as_text=True)
    assert "Abgelehnt: Die Anfrage ist beendet." in html
    assert "<strong>abgelehnt</strong>" in html and "hat um" in html and "abgelehnt" in html
    assert untranslated(main(html), "de") == []


def test_counted_phrases_take_the_plural_form_and_the_number_format_of_the_page(app):
    template = '{{ ngettext("%(num)s row.", "%(num)s rows.", n, num=n | number) }} {{ count_runs(n) }}'
    with app.test_request_context(headers=GERMAN):
        assert render_template_string(template, n=1) == "1 Zeile. 1 Lauf"
        assert render_template_string(template, n=1234) == "1.234 Zeilen. 1.234 Läufe"
    with app.test_request_context():
        assert render_template_string(template, n=1234) == "1,234 rows. 1,234 runs"


def test_the_status_board_tile_in_german(app, staff):
    before = german(staff, "/")
    assert "Noch kein Ergebnis. Drücken Sie „Jetzt ausführen“, um den Bericht auszuführen." in visible_text(
        main(before)
    )
    token = csrf_token_from(before)
    assert staff.post("/tiles/report/refresh", data={"csrf_token": token}, headers=GERMAN).status_code == 303
    html = german(staff, "/")
    text = visible_text(main(html))
    assert untranslated(main(html), "de") == []
    for word in ("Status", "Plattenbericht", "Berichte", "Stand", "disk ok", "Details", "Jetzt ausführen"):
        assert word in text, word
