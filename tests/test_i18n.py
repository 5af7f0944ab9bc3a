"""Languages (issue 23's plumbing): which language a page is in, the switches, numbers and plurals, catalogue texts.

The page's language is the signed-in user's stored choice, else the cookie ``POST /language``
sets, else the best ``Accept-Language`` match among ``GATEWAY_LANGUAGES``, else English;
``<html lang>`` follows. Strings come from the compiled ``translations/`` catalogues
(``make translations``), which these tests read as the app does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from sqlalchemy import select

from config import SHIPPED_LANGUAGES, ConfigError, parse_languages
from gateway.catalogue import CatalogueError, parse_catalogue
from gateway.catalogue.texts import in_language
from gateway.db.models import AuditEvent, User
from gateway.i18n.formatting import count_runs
from gateway.platform.extensions import db
from tests.conftest import csrf_token_from
from tests.untranslated import TRANSLATIONS, untranslated

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.8"}


@pytest.fixture(autouse=True, scope="module")
def compiled_catalogues() -> None:
    """The app reads the .mo files `make translations` builds from the .po (never committed)."""
    for language in SHIPPED_LANGUAGES[1:]:
        po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
        mo = po.with_suffix(".mo")
        assert mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime, (
            f"{mo} missing or stale: run `make translations`"
        )


def page_language(html: str) -> str:
    match = re.search(r'<html lang="([^"]*)"', html)
    assert match, "no <html lang>"
    return match.group(1)


def csrf(client: FlaskClient, path: str = "/login") -> str:
    return csrf_token_from(client.get(path).get_data(as_text=True))


# --- choosing the language -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.5", "de"),
        ("de-AT", "de"),
        ("en-US,en;q=0.8", "en"),
        ("fr-FR,fr;q=0.9", "en"),  # nothing offered matches: English
        ("fr-FR,de;q=0.5", "de"),  # the best offered one
        ("", "en"),
    ],
)
def test_accept_language_chooses_among_the_offered_languages(client, header, expected):
    response = client.get("/login", headers={"Accept-Language": header} if header else {})
    assert response.status_code == 200
    assert page_language(response.get_data(as_text=True)) == expected


def test_a_signed_out_page_in_german_shows_the_german_strings_and_script_messages(client):
    html = client.get("/login", headers=GERMAN).get_data(as_text=True)
    assert '<label for="language-switch">Sprache</label>' in html
    assert "Kopiert" in html  # <html data-messages>: the scripts' strings, in the page's language
    assert untranslated(html, "de") == []


def test_the_switch_sets_a_cookie_by_post_and_returns_to_a_safe_next(client):
    token = csrf(client)
    response = client.post("/language", data={"csrf_token": token, "language": "de", "next": "/login?next=%2Faccount"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=%2Faccount"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("gateway_language=de;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # The cookie beats the browser's Accept-Language on signed-out pages.
    assert page_language(client.get("/login", headers=ENGLISH).get_data(as_text=True)) == "de"

    hostile = client.post("/language", data={"csrf_token": token, "language": "en", "next": "//evil.example/x"})
    assert hostile.headers["Location"] == "/"
    assert page_language(client.get("/login", headers=GERMAN).get_data(as_text=True)) == "en"


@pytest.mark.parametrize("raw", ["%2F%2Fevil.example", "a%00b", "%ff%fe", "..%2F..%2Fetc%2Fpasswd", "x" * 10_240])
def test_the_switch_returns_to_the_sign_in_page_with_a_safe_next_only(client, raw):
    kept = client.get("/login?next=%2Faccount&other=zzz").get_data(as_text=True)
    assert 'name="next" value="/login?next=%2Faccount"' in kept and "zzz" not in kept.split("language-switch")[1]
    page = client.get(f"/login?next={raw}")
    assert page.status_code == 200
    assert 'name="next" value="/login"' in page.get_data(as_text=True)


def test_the_switch_changes_nothing_without_a_post_its_token_or_a_known_language(client):
    get = client.get("/language?language=de")  # no GET route (anonymous: the sign-in gate's redirect)
    assert get.status_code in (302, 405) and "gateway_language" not in get.headers.get("Set-Cookie", "")
    refused = client.post("/language", data={"language": "de", "next": "/login"})
    assert refused.status_code == 400 and "gateway_language" not in refused.headers.get("Set-Cookie", "")
    unknown = client.post("/language", data={"csrf_token": csrf(client), "language": "fr", "next": "/login"})
    assert unknown.status_code == 303 and "gateway_language" not in unknown.headers.get("Set-Cookie", "")
    assert page_language(client.get("/login", headers=ENGLISH).get_data(as_text=True)) == "en"


def test_a_forged_cookie_is_ignored(client):
    client.set_cookie("gateway_language", "xx")
    assert page_language(client.get("/login", headers=GERMAN).get_data(as_text=True)) == "de"


def test_gateway_languages_limits_what_is_offered(make_app):
    app = make_app(GATEWAY_LANGUAGES="en")
    client = app.test_client()
    html = client.get("/login", headers=GERMAN).get_data(as_text=True)
    assert page_language(html) == "en"
    assert 'id="language-switch"' not in html  # one language: no switch


def test_the_image_compiles_the_translations():
    """The .mo files are not committed: the container image builds them as make does."""
    dockerfile = (TRANSLATIONS.parent / "deploy" / "Dockerfile").read_text()
    assert "RUN pybabel compile -d translations" in dockerfile


def test_gateway_languages_is_checked():
    assert parse_languages(None) == SHIPPED_LANGUAGES
    assert parse_languages("de, en") == ("en", "de")
    with pytest.raises(ConfigError, match="GATEWAY_LANGUAGES: 'fr' is not a shipped language"):
        parse_languages("en,fr")
    with pytest.raises(ConfigError, match="GATEWAY_LANGUAGES: must include en"):
        parse_languages("de")


# --- the small scripts' strings ---------------------------------------------------------------


def test_every_string_a_script_asks_for_comes_from_the_server_in_the_page_language(app):
    """Each ``text("key", ...)`` in gateway/static has its entry in ``<html data-messages>``, German on a German page."""
    import html as html_module
    import json

    from gateway.i18n.scripts import script_messages

    static = TRANSLATIONS.parent / "gateway" / "static"
    used = {
        key
        for script in static.glob("*.js")
        for key in re.findall(r"""\btext\(\s*"([a-z_]+\.[a-z_]+)\"""", script.read_text(encoding="utf-8"))
    }
    assert {"copy.copied", "choices.loading", "run.ended", "passkey.waiting"} <= used
    with app.test_request_context("/", headers=GERMAN):
        german = script_messages()
    with app.test_request_context("/", headers=ENGLISH):
        english = script_messages()
    assert used <= german.keys()
    assert german["choices.loading"] == "Wird geladen…" and english["choices.loading"] == "Loading…"
    assert german["status.succeeded"] == "Erfolgreich" and english["status.timed_out"] == "Timed out"
    assert german["invite.for"].count("{name}") == 1  # the script puts the bold name there
    page = app.test_client().get("/login", headers=GERMAN).get_data(as_text=True)
    attribute = re.search(r"data-messages='([^']*)'", page)
    assert attribute and json.loads(html_module.unescape(attribute.group(1)))["run.starting"] == "Wird gestartet…"


# --- what machines read stays English ---------------------------------------------------------

UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"


def test_the_api_shell2http_health_and_metrics_answer_in_english_whatever_the_caller_asks(app, client, users, login):
    """A German browser, cookie and stored choice: pages are German, what scripts and tools read is English."""
    from tests.test_api_runs import issue_token

    with app.app_context():
        from gateway.i18n.views import store_language

        store_language(db.session.get(User, users["staff"].id), "de")
    login("staff")
    client.set_cookie("gateway_language", "de")
    bearer = {"Authorization": f"Bearer {issue_token(app, 'staff')[1]}", **GERMAN}

    for headers in (bearer, GERMAN):  # a token, or the German user's own session
        missing = client.get(f"/api/v1/runs/{UNKNOWN_RUN}", headers=headers)
        assert missing.status_code == 404
        assert missing.get_json()["error"]["message"] == "No such run."
    refused = client.post("/api/v1/commands/nope/runs", json={}, headers={**GERMAN, "Authorization": "Bearer bad"})
    assert refused.status_code == 401 and refused.is_json and "Anmeld" not in refused.get_data(as_text=True)
    unknown = client.get("/api/v1/nothing-here", headers=bearer)
    assert unknown.get_json()["error"]["message"] == "Not found."
    shell = client.post("/shell2http/nope", json={"args": []}, headers=bearer)
    assert shell.status_code == 404 and shell.get_json() == {"error": "No such command."}
    for path in ("/healthz", "/livez", "/metrics"):
        answer = client.get(path, headers=GERMAN)
        assert answer.status_code in (200, 503), path
        assert "Läufe" not in answer.get_data(as_text=True) and 'lang="de"' not in answer.get_data(as_text=True)
    # The same refusal on a page is German (the error page, in the page's language).
    page = client.get(f"/runs/{UNKNOWN_RUN}", headers=ENGLISH)  # the stored choice wins
    assert page.status_code == 404
    assert "Diesen Lauf gibt es nicht." in page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/runs", "en"),
        (f"/api/v1/runs/{UNKNOWN_RUN}/stream", "en"),
        ("/api/v1/no-such-route", "en"),
        ("/shell2http/greet", "en"),
        ("/metrics", "en"),
        ("/healthz", "en"),
        ("/readyz", "en"),
        ("/livez", "en"),
        ("/login", "de"),
        ("/runs", "de"),
        ("/apis", "de"),  # a page whose path merely starts alike
    ],
)
def test_the_language_chooser_answers_english_for_everything_that_is_not_a_page(app, path, expected):
    """Whatever an API view or error handler translates (now or later), a tool reads it in English."""
    from flask_babel import gettext, refresh

    from gateway.i18n.choice import page_language as chooser

    with app.test_request_context(path, headers=GERMAN):
        refresh()
        assert chooser() == expected
        assert gettext("Not found.") == ("Nicht gefunden." if expected == "de" else "Not found.")


def test_a_phrase_is_english_for_machines_and_in_the_page_language_on_a_page(app):
    """``N_`` texts (OIDC refusals, the policy's, the error page's): English as ``str``, translated by ``on_page``."""
    import json

    from gateway.identity.oidc import bad_token
    from gateway.platform.phrases import N_, on_page

    refused = N_("The identity provider refused the sign-in (%(code)s).", code="access_denied")
    assert refused == "The identity provider refused the sign-in (access_denied)."
    assert (
        json.dumps({"message": refused}) == '{"message": "The identity provider refused the sign-in (access_denied)."}'
    )
    with app.test_request_context("/login", headers=GERMAN):
        assert on_page(refused) == "Der Identitätsanbieter hat die Anmeldung abgelehnt (access_denied)."
        assert on_page("No such run.") == "Diesen Lauf gibt es nicht."  # a plain msgid, as another room passes it
        assert on_page("a text the catalogue does not know") == "a text the catalogue does not know"
        assert on_page(None) == ""
        failed = bad_token(N_("signature")).message  # a phrase inside a phrase
        assert on_page(
            failed
        ) == "Die Antwort des Identitätsanbieters hat eine Prüfung nicht bestanden (Signatur). " + (
            "Versuchen Sie es erneut."
        )
    assert str(failed) == "The identity provider's answer failed a check (signature). Try again."
    with app.test_request_context("/login", headers=ENGLISH):
        assert on_page(refused) == "The identity provider refused the sign-in (access_denied)."


def test_the_sign_in_page_s_messages_are_in_the_page_language_and_the_ledger_keeps_english(app, client, users):
    token = csrf(client, "/login")
    wrong = client.post("/login", data={"csrf_token": token, "username": "staff", "password": "nope"}, headers=GERMAN)
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 401 and "Benutzername oder Passwort ist falsch." in html
    assert page_language(html) == "de" and untranslated(html, "de") == []
    with app.app_context():
        failed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "auth.login_failed")).all()
    assert failed and all("Benutzer" not in str(event.detail) for event in failed)
    english = client.post("/login", data={"csrf_token": token, "username": "staff", "password": "nope"})
    assert "Invalid username or password." in english.get_data(as_text=True)


# --- the account page's stored choice ---------------------------------------------------------


def stored(app: Flask, name: str) -> str | None:
    with app.app_context():
        return db.session.scalar(select(User.language).where(User.username == name))


def language_events(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "admin.user_updated"))
        return [row for row in rows if (row.detail or {}).get("changed") == ["language"]]


def test_the_account_page_stores_the_language_audits_it_and_it_wins_over_browser_and_cookie(app, client, login, users):
    login("staff")
    page = client.get("/account", headers=ENGLISH).get_data(as_text=True)
    assert page_language(page) == "en"
    assert '<option value="" selected>As the browser asks</option>' in page

    client.set_cookie("gateway_language", "en")
    response = client.post(
        "/account/language", data={"csrf_token": csrf_token_from(page), "language": "de"}, headers=ENGLISH
    )
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    assert stored(app, "staff") == "de"
    [event] = language_events(app)
    assert (event.actor_id, event.actor_name, event.outcome) == (users["staff"].id, "staff", "ok")
    assert event.detail == {"user": "staff", "changed": ["language"], "before": None, "after": "de"}

    page = client.get("/account", headers=ENGLISH).get_data(as_text=True)  # browser and cookie say English
    assert page_language(page) == "de"
    assert "Ihre Sprache wurde gespeichert." in page
    assert '<option value="de" lang="de" selected>Deutsch</option>' in page
    assert ">Meine Läufe</a>" in page and ">Abmelden</button>" in page  # the header; every page: test_i18n_pages.py

    # The same choice again writes nothing; an empty one hands the choice back to the browser.
    token = csrf_token_from(page)
    client.post("/account/language", data={"csrf_token": token, "language": "de"})
    assert len(language_events(app)) == 1
    client.post("/account/language", data={"csrf_token": token, "language": ""})
    assert stored(app, "staff") is None
    assert language_events(app)[-1].detail["after"] is None
    assert page_language(client.get("/account", headers=GERMAN).get_data(as_text=True)) == "de"
    assert page_language(client.get("/account", headers=ENGLISH).get_data(as_text=True)) == "en"


def test_the_order_stored_then_cookie_then_browser_and_the_sign_in_page_after_signing_out(app, client, login):
    """Signed in without a stored choice: the cookie, else the browser. The account's choice sets the cookie
    too, so the sign-in page after signing out stays in that language."""
    login("staff")
    assert page_language(client.get("/runs", headers=GERMAN).get_data(as_text=True)) == "de"
    assert page_language(client.get("/runs", headers=ENGLISH).get_data(as_text=True)) == "en"
    client.set_cookie("gateway_language", "de")
    runs = client.get("/runs", headers=ENGLISH).get_data(as_text=True)
    assert page_language(runs) == "de" and ">Meine Läufe</a>" in runs
    client.delete_cookie("gateway_language")

    page = client.get("/account", headers=ENGLISH).get_data(as_text=True)
    stored_answer = client.post("/account/language", data={"csrf_token": csrf_token_from(page), "language": "de"})
    assert stored_answer.headers["Set-Cookie"].startswith("gateway_language=de;")
    signed_in = client.get("/account", headers=ENGLISH).get_data(as_text=True)
    out = client.post("/logout", data={"csrf_token": csrf_token_from(signed_in)}, headers=ENGLISH)
    assert out.status_code == 302
    sign_in = client.get("/login", headers=ENGLISH).get_data(as_text=True)
    assert page_language(sign_in) == "de" and "Sie sind abgemeldet." in sign_in and ">Anmelden</h1>" in sign_in


def test_the_account_language_refuses_an_unknown_one_and_strangers(app, client, login):
    anonymous = client.post("/account/language", data={"csrf_token": csrf(client), "language": "de"})
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    login("staff")
    page = client.get("/account").get_data(as_text=True)
    response = client.post("/account/language", data={"csrf_token": csrf_token_from(page), "language": "fr"})
    assert response.status_code == 303
    assert "Choose one of the languages offered." in client.get("/account").get_data(as_text=True)
    assert stored(app, "staff") is None
    assert client.post("/account/language", data={"language": "de"}).status_code == 400  # no CSRF token


# --- numbers and plurals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "one", "three", "many", "decimal"),
    [
        (ENGLISH, "1 run", "3 runs", "1,234 runs", "1,234,567.5"),
        (GERMAN, "1 Lauf", "3 Läufe", "1.234 Läufe", "1.234.567,5"),
    ],
)
def test_numbers_and_plural_forms_follow_the_page_language(app, headers, one, three, many, decimal):
    with app.test_request_context("/", headers=headers):
        assert [count_runs(1), count_runs(3), count_runs(1234)] == [one, three, many]
        assert render_template_string("{{ 1234567.5 | number }}|{{ none | number }}") == f"{decimal}|"
        assert render_template_string("{{ count_runs(3) }}") == three


@pytest.mark.parametrize(
    ("seconds", "german", "english"),
    [
        (60, "Versuchen Sie es in 1 Minute erneut.", "Try again in 1 minute."),
        (180, "Versuchen Sie es in 3 Minuten erneut.", "Try again in 3 minutes."),
        (3 * 3600, "Versuchen Sie es in 3 Stunden erneut.", "Try again in 3 hours."),
    ],
)
def test_a_plural_on_a_real_page_the_sign_in_lock_says_how_long(make_app, seconds, german, english):
    """The sign-in page's lock message counts minutes or hours with the language's plural forms."""
    app = make_app(LOGIN_MAX_ATTEMPTS=1, LOGIN_LOCK_SECONDS=seconds, LOGIN_LOCK_MAX_SECONDS=seconds)
    client = app.test_client()
    token = csrf(client)
    wrong = {"csrf_token": token, "username": "ghost", "password": "wrong-password-1"}
    client.post("/login", data=wrong)  # the one failure allowed: the name is locked now
    locked = client.post("/login", data=wrong, headers=GERMAN).get_data(as_text=True)
    assert f"Zu viele fehlgeschlagene Anmeldeversuche für dieses Konto. {german}" in locked
    assert untranslated(locked, "de") == []
    assert english in client.post("/login", data=wrong, headers=ENGLISH).get_data(as_text=True)


# --- catalogue texts --------------------------------------------------------------------------


def catalogue_with(**fields: object):
    command = {"name": "disk", "title": "Disk", "kind": "shell", "argv": ["df", "{path}"], "params": {"path": {}}}
    command.update(fields)
    return parse_catalogue(yaml.safe_dump({"commands": [command]}), {})


def test_catalogue_texts_carry_translations_and_stay_english_elsewhere(app):
    plain = catalogue_with().get("disk")
    command = catalogue_with(
        title={"en": "Disk usage", "de": "Plattenplatz"},
        description={"en": "Free space per mount"},  # no German: falls back to English
        params={"path": {"help": {"en": "A mount point", "de": "Ein Einhängepunkt"}, "label": "Path"}},
    ).get("disk")
    assert command.title == "Disk usage" and isinstance(command.title, str)
    assert command.model_dump(mode="json")["title"] == "Disk usage"  # API, ledger, digest: English
    assert (
        catalogue_with(title="Disk usage", params={"path": {"help": "A mount point", "label": "Path"}})
        .get("disk")
        .definition_digest
        == command.model_copy(update={"description": ""}).definition_digest
    )
    assert plain.definition_digest != command.definition_digest
    assert in_language(command.title, "de") == "Plattenplatz"
    assert in_language(command.description, "de") == "Free space per mount"
    assert in_language(command.params["path"].help, "de") == "Ein Einhängepunkt"
    assert in_language(command.params["path"].label, "de") == "Path"
    with app.test_request_context("/", headers=GERMAN):
        assert render_template_string("{{ c.title | localized }}", c=command) == "Plattenplatz"
    with app.test_request_context("/", headers=ENGLISH):
        assert render_template_string("{{ c.title | localized }}", c=command) == "Disk usage"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": {"en": "Disk", "fr": "Disque"}}, "command 'disk' field title: unknown language 'fr'"),
        ({"title": {"de": "Platte"}}, "command 'disk' field title: the English text ('en') is required"),
        ({"description": {"en": "x", "de": ["y"]}}, "command 'disk' field description: the 'de' text must be"),
        ({"params": {"path": {"help": {"EN": "x"}}}}, "command 'disk' field params.path.help: unknown language 'EN'"),
        ({"params": {"path": {"label": 7}}}, "command 'disk' field params.path.label: expected a text"),
    ],
)
def test_a_bad_catalogue_text_is_refused_naming_the_field(fields, message):
    with pytest.raises(CatalogueError) as caught:
        catalogue_with(**fields)
    assert message in str(caught.value)


# --- the untranslated-string check ------------------------------------------------------------


def test_the_untranslated_check_finds_english_left_on_a_german_page(client, tmp_path: Path):
    assert untranslated(client.get("/login", headers=GERMAN).get_data(as_text=True), "de") == []
    # What a German page with nothing translated shows:
    english = client.get("/login", headers=ENGLISH).get_data(as_text=True)
    assert {"Sign in", "Username", "Password", "Skip to content"} <= set(untranslated(english, "de"))
    po = (TRANSLATIONS / "de" / "LC_MESSAGES" / "messages.po").read_text(encoding="utf-8")
    # A catalogue whose "Language" is fuzzy: left out of the compiled catalogue, so the page says it in English.
    extra = '\n#, fuzzy\nmsgid "Language"\nmsgstr "Sprache"\n'
    (tmp_path / "messages.po").write_text(po.replace('msgid "Language"\nmsgstr "Sprache"\n', "") + extra)
    assert untranslated('<p>Sprache</p><button aria-label="Language">x</button>', "de", tmp_path / "messages.po") == [
        "Language"
    ]
    assert untranslated("<p>3 runs</p><script>'Language'</script>", "de") == ["%(count)s runs"]
    assert untranslated("<a>Many runs</a>", "de") == []  # a count is a number
    # Not reader text: code, an identifier's word, data shown as it is, a word German writes too.
    assert untranslated("<p>Sign in</p>", "de") == ["Sign in"]
    assert untranslated("<pre>Sign in</pre><code>Password</code>", "de") == []
    assert untranslated("<td>Sign in.now</td><td>Password=x</td><td>x.Password</td>", "de") == []
    assert untranslated("<h1>Sign in · Disk usage</h1><label>Password</label>", "de", ignore=["Password"]) == [
        "Sign in"
    ]
    assert untranslated("<h1>Tasks by status · Ops Gateway</h1>", "de", ignore=["Tasks by status"]) == []
    words = tmp_path / "words.po"  # German writes "Link" too: a German page saying it is not English left over
    words.write_text(po + '\nmsgid "Link"\nmsgstr "Verweis"\n\nmsgid "The invite link"\nmsgstr "Der Link"\n')
    assert untranslated("<p>Der Link</p>", "de", words) == []
    assert untranslated("<p>The invite link</p>", "de", words) == ["The invite link"]


# --- the migration ----------------------------------------------------------------------------


@pytest.mark.both_engines
def test_the_language_column_arrives_empty_and_leaves_without_touching_the_rows(empty_database_url, tmp_path):
    """0012 adds users.language (NULL: the browser decides) and drops it again; users and memberships stay."""
    import sqlalchemy as sa

    from gateway import create_app
    from gateway.db import migrate
    from tests.conftest import base_environ

    app = create_app(base_environ(empty_database_url), instance_path=tmp_path / "instance")
    with app.app_context():
        migrate.upgrade("0011")
        with db.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO users (id, username, display_name, is_admin, active, created_at, updated_at, source) "
                "VALUES (7, 'old', 'Old', false, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'local')"
            ))  # fmt: skip
            connection.execute(
                sa.text(
                    "INSERT INTO groups (id, name, description, created_at) VALUES (3, 'ops', '', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO group_members (group_id, user_id, added_at, origin) VALUES (3, 7, CURRENT_TIMESTAMP, 'manual')"
                )
            )
        migrate.upgrade("0012")
        with db.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT language FROM users WHERE id = 7")).scalar_one() is None
        migrate.downgrade("0011")
        with db.engine.connect() as connection:
            assert "language" not in {column["name"] for column in sa.inspect(connection).get_columns("users")}
            assert connection.execute(sa.text("SELECT count(*) FROM group_members WHERE user_id = 7")).scalar_one() == 1
        db.session.remove()
        db.engine.dispose()
