"""The admin pages in German (issue 23): every page, the confirmation step, flashes and Undo; the ledger stays English.

An admin whose browser asks for German (``Accept-Language``) or who stored German on the
account page works through the admin pages in German, while what those actions write to
the audit ledger, the audit exports and the CLI keep their English (machine-readable)
wording. Each page is checked twice: ``untranslated`` (a catalogue string shown in English)
and a look for English words no German text has (a string never wrapped at all).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from gateway.audit.summary import summary
from gateway.identity import accounts, groups, tokens
from tests import test_admin_pages
from tests.test_admin_confirm import confirm_form, undo_form
from tests.test_admin_pages import events, post
from tests.test_i18n import GERMAN, compiled_catalogues, page_language  # noqa: F401  # the .mo must be built
from tests.untranslated import untranslated, visible_text

CATALOGUE = textwrap.dedent(
    """
    commands:
      - name: uptime
        title: {en: Uptime, de: Laufzeit}
        category: {en: Reports, de: Berichte}
        kind: shell
        argv: ["uptime"]
        params:
          lines: {type: integer, min: 1, max: 50, default: 5}
    schedules:
      - name: nightly
        command: uptime
        cron: "0 3 * * *"
    """
)

# Words of English sentences that no German page text contains (whole words, case-sensitive).
ENGLISH_WORDS = re.compile(
    r"\b(the|and|of|is|are|were|with|this|that|their|they|your|yet|been|have|can|cannot|may|not|none|never|only|"
    r"every|which|who|when|there|here|for|from|into|at|by|or|if|to|Users|Groups|Permissions|Commands|Schedules|"
    r"Deliveries|Audit|Enable|Disable|Revoke|Remove|Cancel|Search|Clear|Newest|Older|State|Actions|Created)\b"
)


def own_text(html: str) -> str:
    """What the admin templates put on the page: its title and ``<main>``, without ``<code>``/``<pre>``
    (identifiers and the ledger's own English data). The header and footer are base.html's, checked
    with every page by the German page sweep."""
    title = re.search(r"<title>.*?</title>", html, re.S)
    main = re.search(r'<main id="main">.*</main>', html, re.S)
    assert title and main
    text = re.sub(r"<(code|pre)\b[^>]*>.*?</\1>", " ", title.group(0) + main.group(0), flags=re.S)
    return re.sub(r"\((?:[a-z]+\.)+[a-z_*]+\)", " ", text)  # the event filter's "(delivery.dead)": event names


def english_left(html: str) -> list[str]:
    """English words in the visible text the admin templates put on the page."""
    return sorted(set(ENGLISH_WORDS.findall(visible_text(own_text(html)))))


def not_german(html: str) -> list[str]:
    """Catalogue strings shown in English, and English words of strings never wrapped."""
    return untranslated(own_text(html), "de") + english_left(html)


@pytest.fixture
def app(make_app, tmp_path: Path):
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=path)


admin = test_admin_pages.admin  # signed in as the admin


@pytest.fixture
def seeded(app, users):
    """Something on every page: a group with a member and a grant, a token, a disabled user, ledger rows."""
    with app.app_context():
        groups.create_group("ops", description="Bereitschaft")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "uptime", known_commands={"uptime": None})
        tokens.create_token(accounts.get_user("staff"), name="ci")
        accounts.set_active(accounts.get_user("other"), False)
    return users


def german(client, url: str) -> str:
    response = client.get(url, headers=GERMAN)
    assert response.status_code == 200, url
    html = response.get_data(as_text=True)
    assert page_language(html) == "de"
    return html


PAGES = [
    "/admin/users",
    "/admin/groups",
    "/admin/permissions",
    "/admin/commands",
    "/admin/commands/uptime",
    "/admin/schedules",
    "/admin/deliveries",
    "/admin/tokens",
    "/admin/audit",
    "/admin/audit/1",
    "/admin/audit?event=admin.*",
    # /admin/runs: its table and filters are the shared run-list macros (templates/_runs.html), another
    # translator's; test_all_runs_page_is_german checks this page's own strings.
]


@pytest.mark.parametrize("url", PAGES)
def test_every_admin_page_is_german(app, admin, seeded, url):
    html = german(admin, url)
    left = not_german(html)
    assert left == [], f"{url}: {left}"


def test_the_pages_say_german_things_with_german_numbers_and_plurals(app, admin, seeded):
    users_page = german(admin, "/admin/users")
    assert "<h1>Benutzer</h1>" in users_page and "Benutzer anlegen" in users_page
    assert 'aria-label="staff deaktivieren"' in users_page
    commands = german(admin, "/admin/commands")
    assert "(1 Befehl, Datei-sha256" in commands and ">Laufzeit</a>" in commands  # the catalogue's own German
    audit_page = german(admin, "/admin/audit")
    count = re.search(r'id="match-count" role="status">([^<]*)<', audit_page).group(1)
    assert re.fullmatch(r"\d+ Ereignisse passen\.", count), count
    assert '<td class="summary">uptime für ops erlaubt</td>' in audit_page
    assert '<td class="summary">staff → ops</td>' in audit_page
    assert '<option value="admin.*">Jede Verwaltungsänderung</option>' in audit_page
    refused = admin.get("/admin/audit?since=gestern", headers=GERMAN).get_data(as_text=True)
    assert "Von: ist kein Datum mit Uhrzeit wie 2024-05-01T12:00" in refused
    verified = post(admin, "/admin/audit/verify", page="/admin/audit")
    assert "Kette in Ordnung" not in verified.get_data(as_text=True)  # no Accept-Language on that POST: English
    verified = admin.post(
        "/admin/audit/verify",
        data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', audit_page).group(1)},
        headers=GERMAN,
    ).get_data(as_text=True)
    assert re.search(r"Kette in Ordnung: \d+ Ereignisse geprüft, letzte Seq \d+\.", verified)


def test_a_german_admin_disables_and_grants_in_german_while_the_ledger_stays_english(app, admin, seeded):
    # The stored choice (account page), not the browser, makes these pages German.
    assert post(admin, "/account/language", {"language": "de"}, page="/account").status_code == 303
    staff_id = seeded["staff"].id

    asked = post(admin, f"/admin/users/{staff_id}/disable").get_data(as_text=True)
    assert '<h1 id="confirm-heading">staff wirklich deaktivieren?</h1>' in asked
    assert "Noch wurde nichts geändert." in asked and ">Abbrechen</a>" in asked and ">Deaktivieren</button>" in asked
    assert not_german(asked) == []
    action, fields = confirm_form(asked)
    done = admin.post(action, data=fields)
    page = admin.get(done.headers["Location"]).get_data(as_text=True)
    assert "staff ist deaktiviert; die Sitzungen wurden beendet und die API-Tokens widerrufen." in page
    assert undo_form(page) is not None and "Rückgängig: staff wieder aktivieren" in page

    granted = post(
        admin, "/admin/permissions", {"group": "ops", "command": "uptime", "action": "revoke", "confirm": "yes"}
    )
    assert granted.status_code == 303
    again = post(admin, "/admin/permissions", {"group": "ops", "command": "uptime", "action": "grant"})
    flashed = admin.get(again.headers["Location"]).get_data(as_text=True)
    assert "ops darf uptime jetzt ausführen." in flashed

    # The ledger: the same English detail a CLI or API change writes; no German in any of it.
    written = events(app, "admin.user_updated") + events(app, "admin.grant_removed") + events(app, "admin.grant_added")
    assert len(written) >= 4  # the language, other's and staff's disabling, the revoke, the grants
    for event in written:
        stored = json.dumps([event.detail, event.outcome, event.event], ensure_ascii=False)
        assert not re.search(r"[äöüß]|deaktiviert|erlaubt|Berechtigung", stored), stored
    added = written[-1]
    assert summary(added.event, added.detail, command=added.command) == "granted uptime to ops"  # English by default

    # The export and its file name stay English, asked for by a German admin.
    export = admin.get("/admin/audit/export.csv?event=admin.*", headers=GERMAN)
    assert re.fullmatch(
        r'attachment; filename="audit-\d{4}-\d\d-\d\d-event-admin\.csv"', export.headers["Content-Disposition"]
    )
    text = export.get_data(as_text=True)
    assert "admin.grant_added" in text and not re.search(r"[äöüß]|deaktiviert|erlaubt", text)

    # The audit page itself reads the same rows in German.
    audit_page = admin.get("/admin/audit").get_data(as_text=True)
    assert "uptime für ops erlaubt" in audit_page and "staff deaktiviert" in audit_page


def test_refusals_from_the_services_are_german_on_the_page_and_english_elsewhere(app, admin, seeded):
    html = admin.post(
        "/admin/users",
        data={
            "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', german(admin, "/admin/users")).group(1),
            "username": "staff",
            "password_mode": "set",
            "password": "short",
            "password_confirm": "short",
        },
        headers=GERMAN,
    ).get_data(as_text=True)
    assert "&#39;staff&#39; gibt es bereits." in html
    assert "Das Passwort muss mindestens 12 Zeichen lang sein." in html
    assert "Bitte korrigieren Sie die unten markierten Felder." in html
    with app.app_context(), pytest.raises(accounts.AccountError, match="already exists"):
        accounts.create_user("staff", "x" * 20)  # the service (the CLI's words) stays English

    # A refusal the service itself raises (no form check before it): German on the page, English for the CLI.
    assert post(admin, "/account/language", {"language": "de"}, page="/account").status_code == 303
    member = post(admin, "/admin/groups/ops/members", {"username": "nobody-here"}, page="/admin/groups")
    assert "Kein Benutzer &#39;nobody-here&#39;." in member.get_data(as_text=True)
    with app.app_context(), pytest.raises(accounts.AccountError, match=r"^username: no user 'nobody-here'$"):
        groups.add_member("ops", "nobody-here")


def test_all_runs_page_is_german(app, admin, seeded):
    html = german(admin, "/admin/runs")
    assert "<h1>Alle Läufe</h1>" in html and '<label for="filter-user">Benutzer</label>' in html
    assert "Bisher hat niemand etwas ausgeführt." in html
    assert "<title>Alle Läufe · Verwaltung · Ops Gateway</title>" in html


def test_the_check_is_not_blind_an_english_page_fails_it(app, admin, seeded):
    html = admin.get("/admin/users").get_data(as_text=True)  # no Accept-Language: English
    left = not_german(html)
    assert "Users" in left and "Create user" in left and "the" in left


def test_every_confirmation_step_and_its_outcome_is_german(app, admin, seeded):
    assert post(admin, "/account/language", {"language": "de"}, page="/account").status_code == 303
    with app.app_context():
        [token] = tokens.tokens_of(None)
        token_id = token.id
    steps = [
        ("/admin/commands/uptime/disable", {}, "uptime wirklich deaktivieren?", "uptime ist deaktiviert: Niemand"),
        (
            "/admin/groups/ops/members/remove",
            {"username": "staff"},
            "staff wirklich aus ops entfernen?",
            "staff aus ops entfernt.",
        ),
        (
            "/admin/permissions",
            {"group": "ops", "command": "uptime", "action": "revoke"},
            "uptime wirklich für ops entziehen?",
            "ops darf uptime nicht mehr ausführen.",
        ),
        (
            f"/admin/tokens/{token_id}/revoke",
            {},
            "Das Token ci von staff wirklich widerrufen?",
            "Token ci von staff widerrufen",
        ),
        (
            "/admin/groups/ops/delete",
            {},
            "Gruppe ops wirklich löschen?",
            "Gruppe ops gelöscht (0 Mitglieder, 0 Berechtigungen).",
        ),
    ]
    for url, data, question, outcome in steps:
        asked = post(admin, url, data).get_data(as_text=True)
        assert question in asked and not_german(asked) == [], url
        action, fields = confirm_form(asked)
        done = admin.post(action, data=fields)
        assert done.status_code == 303, url
        assert outcome in admin.get(done.headers["Location"]).get_data(as_text=True), url
