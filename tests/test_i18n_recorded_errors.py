"""A run's recorded error on a German run page, run-time parts included; the API keeps the English.

``runs.error`` keeps the English word for word (the API's ``error``, the ledger); the
same error's phrase is stored beside it (``runs.error_phrase``, JSON on both engines)
and the run page renders that in its language: an exit status, a timeout's seconds
(0,5 in German), a query's timeout, a concurrency refusal inside "Approved, but not
started". A run recorded before the column shows its English as it was.
"""

from __future__ import annotations

import re
import sqlite3
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from gateway.db.models import Run
from gateway.identity import groups
from gateway.platform.extensions import db
from gateway.platform.phrases import N_, STORED_TEXT_CHARS, N_counted, Phrase, on_page
from gateway.platform.timeutil import utcnow
from gateway.runs import store
from tests.conftest import csrf_token_from
from tests.test_i18n import GERMAN, compiled_catalogues  # noqa: F401  (the .mo must be current)
from tests.test_i18n_refusals import decide, run_json, run_of
from tests.test_i18n_staff import german, main, submit, wait_done
from tests.untranslated import untranslated, visible_text

pytestmark = pytest.mark.both_engines  # the stored phrase is JSON on SQLite and on PostgreSQL

SLOW_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS n FROM c"
)
CATALOGUE = textwrap.dedent(
    f"""
    datasources:
      ops: {{url_env: GATEWAY_TEST_RECORDED_OPS_URL, statement_timeout: 0.5}}
    commands:
      - name: fails
        title: {{en: Fails, de: Scheitert}}
        kind: shell
        argv: ["sh", "-c", "exit 3"]
      - name: slow
        title: {{en: Slow, de: Langsam}}
        kind: shell
        argv: ["sleep", "30"]
        timeout: 0.5
      - name: slow-query
        title: {{en: Slow query, de: Langsame Abfrage}}
        kind: query
        datasource: ops
        sql: "{SLOW_SQL}"
      - name: purge
        title: {{en: Purge caches, de: Caches leeren}}
        kind: shell
        argv: ["sleep", "30"]
        concurrency: 1
        approval: {{approvers: [leads], expires_minutes: 30}}
    """
)


@pytest.fixture
def app(make_app, tmp_path: Path, monkeypatch):
    source = tmp_path / "ops.db"
    with sqlite3.connect(source) as connection:
        connection.execute("CREATE TABLE t (x INTEGER)")
    monkeypatch.setenv("GATEWAY_TEST_RECORDED_OPS_URL", f"sqlite:///{source}")
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=str(path))


@pytest.fixture
def staff(app, users, login):
    with app.app_context():
        groups.create_group("ops")
        groups.create_group("leads")
        for name in ("fails", "slow", "slow-query", "purge"):
            groups.add_grant("ops", name)
        groups.add_member("ops", "staff")
        groups.add_member("leads", "other")
    return login("staff")


def error_paragraph(client, run_id: str) -> str:
    """The run page's recorded error, in German, with nothing of the page left in English."""
    html = main(german(client, f"/runs/{run_id}"))
    assert untranslated(html, "de") == []
    match = re.search(r'<p class="error" role="alert">(.*?)</p>', html, re.S)
    assert match, "the page shows no recorded error"
    return visible_text(match.group(1)).strip()


def stored(app, run_id: str) -> tuple[str | None, object]:
    with app.app_context():
        row = db.session.execute(select(Run.error, Run.error_phrase).where(Run.id == run_id)).one()
        db.session.remove()
    return row.error, row.error_phrase


def ended(app, client, name: str) -> str:
    run_id = run_of(submit(client, name, {}))
    wait_done(app, run_id)
    return run_id


def test_a_failed_shell_run_s_exit_status_is_german_on_the_page_and_english_in_the_api(app, staff):
    run_id = ended(app, staff, "fails")
    assert error_paragraph(staff, run_id) == "mit Status 3 beendet"
    assert run_json(app, run_id)["error"] == "exited with status 3"
    assert stored(app, run_id) == (
        "exited with status 3",
        {"msgid": "exited with status %(status)s", "values": {"status": 3}, "plural": None, "amount": None},
    )


def test_a_timed_out_run_says_its_seconds_in_german_numbers(app, staff):
    run_id = ended(app, staff, "slow")
    assert error_paragraph(staff, run_id) == "Zeitlimit nach 0,5 s überschritten"
    assert run_json(app, run_id)["error"] == "timed out after 0.5 s"


def test_a_query_timeout_is_german_on_the_page_and_english_in_the_api(app, staff):
    run_id = ended(app, staff, "slow-query")
    assert error_paragraph(staff, run_id) == "Zeitlimit der Abfrage nach 0,5 s überschritten"
    answer = run_json(app, run_id)
    assert (answer["status"], answer["error"]) == ("timed_out", "query timed out after 0.5 s")


def test_an_approval_refused_by_the_concurrency_limit_says_the_whole_reason_in_german(app, staff, login):
    first = run_of(submit(staff, "purge", {}))
    second = run_of(submit(login("staff"), "purge", {}))
    decide(login("other"), first, "approve")
    try:
        decide(login("other"), second, "approve")
        assert error_paragraph(login("staff"), second) == (
            "Zugestimmt, aber nicht gestartet: "
            "Dieser Befehl läuft bereits 1-mal, sein Limit; versuchen Sie es erneut, wenn ein Lauf endet."
        )
        english = (
            "Approved, but not started: "
            "This command is already running 1 time(s), its limit; try again when one finishes."
        )
        assert run_json(app, second)["error"] == english
        error, phrase = stored(app, second)
        assert error == english
        assert phrase["msgid"] == "Approved, but not started: %(reason)s"
        reason = phrase["values"]["reason"]
        assert reason["msgid"].startswith("This command is already running %(count)s time(s)")
        assert reason["values"] == {"count": 1}
    finally:
        client = login("staff")
        token = csrf_token_from(client.get(f"/runs/{first}").get_data(as_text=True))
        client.post(f"/runs/{first}/cancel", data={"csrf_token": token})
        wait_done(app, first)
    assert run_json(app, first)["error"] == "cancelled"
    assert error_paragraph(login("staff"), first) == "abgebrochen"


def test_the_stored_phrase_is_json_the_database_reads(app, staff, backend):
    run_id = ended(app, staff, "fails")
    with app.app_context():
        if backend == "postgresql":
            sql = "SELECT json_typeof(error_phrase), error_phrase->'values'->>'status' FROM runs WHERE id = :id"
        else:
            sql = (
                "SELECT json_type(error_phrase), json_extract(error_phrase, '$.values.status') FROM runs WHERE id = :id"
            )
        kind, status = db.session.execute(text(sql), {"id": run_id}).one()
        plain = db.session.scalar(text("SELECT COUNT(*) FROM runs WHERE error_phrase IS NULL"))
        db.session.remove()
    assert (kind, str(status)) == ("object", "3")
    assert plain == 0  # nothing here ended with a plain text: no JSON 'null' stands in for SQL NULL either


def test_a_run_recorded_before_the_phrase_column_shows_its_text_as_recorded(app, staff):
    """Old rows: a run-time text stays English, a fixed sentence is still found by its msgid."""
    failed = ended(app, staff, "fails")
    withdrawn = run_of(submit(staff, "purge", {}))
    decide(staff, withdrawn, "withdraw")
    with app.app_context():
        db.session.execute(update(Run).where(Run.id.in_([failed, withdrawn])).values(error_phrase=None))
        db.session.commit()
        assert db.session.scalar(text("SELECT COUNT(*) FROM runs WHERE error_phrase IS NULL")) == 2
        db.session.remove()
    html = main(german(staff, f"/runs/{failed}"))
    assert '<p class="error" role="alert">exited with status 3</p>' in html
    assert error_paragraph(staff, withdrawn) == "Von seinem Antragsteller zurückgezogen."


def test_runs_prune_removes_runs_with_a_stored_phrase(app, staff):
    run_id = ended(app, staff, "fails")
    with app.app_context():
        assert store.prune(utcnow(), actor=None) >= 1
        assert db.session.get(Run, run_id) is None
        db.session.remove()


# --- the stored form itself -------------------------------------------------------------------------


def test_a_phrase_comes_back_from_its_stored_form_with_its_english_and_its_german(app):
    nested = N_("Approved, but not started: %(reason)s", reason=N_counted("%(num)s item", "%(num)s items", 2))
    for phrase in (
        N_("timed out after %(seconds)s s", seconds=0.5),
        N_("query failed: %(problem)s", problem="no such table: t"),
        nested,
    ):
        rebuilt = Phrase.from_stored(phrase.stored())
        assert (rebuilt, rebuilt.msgid, rebuilt.plural, rebuilt.amount) == (
            phrase,
            phrase.msgid,
            phrase.plural,
            phrase.amount,
        )
        with app.test_request_context(headers=GERMAN):
            assert on_page(rebuilt) == on_page(phrase)
    with app.test_request_context(headers=GERMAN):
        assert on_page(Phrase.from_stored(N_("timed out after %(seconds)s s", seconds=0.5).stored())) == (
            "Zeitlimit nach 0,5 s überschritten"
        )


def test_a_long_text_value_is_stored_cut_and_a_form_that_does_not_fit_is_refused():
    long = N_("query failed: %(problem)s", problem="x" * 5000)
    value = long.stored()["values"]["problem"]
    assert len(value) == STORED_TEXT_CHARS and value.endswith("…")
    assert str(long) == "query failed: " + "x" * 5000  # the English (runs.error) keeps all of it
    for broken in (
        None,
        "text",
        {"values": {}},
        {"msgid": "exited with status %(status)s", "values": {}},
        {"msgid": "x %(a)s", "values": {"a": [1]}},
        {"msgid": "x", "values": {}, "plural": None, "amount": "2"},
    ):
        with pytest.raises(ValueError):
            Phrase.from_stored(broken)
