"""The run engine's refusals and a run's recorded error on a German page, English in the API and the ledger.

The engine and the policy refuse with a ``Phrase`` built where they refuse: the form,
the run page and the approval forms show it in the page's language (values included),
while the JSON answer and the ``run.rejected`` record keep the English word for word.
"""

from __future__ import annotations

import textwrap

import pytest

from gateway.catalogue import switches
from gateway.identity import accounts, groups, tokens
from tests.conftest import csrf_token_from
from tests.test_i18n import GERMAN, compiled_catalogues  # noqa: F401  (the .mo must be current)
from tests.test_i18n_staff import german, main, rejected_details, submit, wait_done
from tests.untranslated import untranslated, visible_text

UNSET = "GATEWAY_TEST_NEVER_SET_OPS_URL"
CATALOGUE = textwrap.dedent(
    f"""
    datasources:
      ops: {{url_env: {UNSET}}}
    commands:
      - name: quick
        title: {{en: Quick, de: Schnell}}
        kind: shell
        argv: ["echo", "done"]
      - name: nap
        title: {{en: Sleeps, de: Schläft}}
        kind: shell
        argv: ["sleep", "30"]
        timeout: 60
        concurrency: 1
      - name: tasks
        title: {{en: Tasks, de: Aufgaben}}
        kind: query
        datasource: ops
        sql: "SELECT 1 AS one"
      - name: purge
        title: {{en: Purge caches, de: Caches leeren}}
        kind: shell
        argv: ["echo", "purged"]
        approval: {{approvers: [leads], expires_minutes: 30}}
    """
)
ADMIN = {"id": None, "name": "test"}


@pytest.fixture
def app(make_app, tmp_path):
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=str(path))


@pytest.fixture
def staff(app, users, login):
    with app.app_context():
        groups.create_group("ops")
        groups.create_group("leads")
        for name in ("quick", "nap", "tasks", "purge"):
            groups.add_grant("ops", name)
        groups.add_member("ops", "staff")
        groups.add_member("leads", "other")
    return login("staff")


@pytest.fixture
def api(app, staff):
    """POST to the API as staff (a token; the German Accept-Language changes nothing there)."""
    with app.app_context():
        secret = tokens.create_token(accounts.get_user("staff"), name="t", expires_days=1).secret
    client = app.test_client()

    def post(path: str, body: dict | None = None):
        return client.post(path, json=body or {}, headers={"Authorization": f"Bearer {secret}", **GERMAN})

    return post


def refused_on_the_form(client, name: str, status: int) -> str:
    """The command page a refused submission comes back to, in German, with nothing left in English."""
    page = submit(client, name, {}, headers=GERMAN)
    assert page.status_code == status
    html = page.get_data(as_text=True)
    assert untranslated(main(html), "de") == []
    return visible_text(main(html))


def refused_by_the_api(api, name: str, status: int) -> str:
    answer = api(f"/api/v1/commands/{name}/runs", {"params": {}})
    assert answer.status_code == status
    return answer.get_json()["error"]["message"]


def run_of(response) -> str:
    assert response.status_code in (201, 202, 303), response.status_code
    location = response.headers.get("Location") or response.get_json()["id"]
    return location.rsplit("/", 1)[-1]


def test_cancelling_a_run_that_ended_is_refused_in_german_on_the_page_and_in_english_by_the_api(app, staff, api):
    run_id = run_of(submit(staff, "quick", {}))
    wait_done(app, run_id)
    token = csrf_token_from(staff.get(f"/runs/{run_id}").get_data(as_text=True))
    page = staff.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}, headers=GERMAN, follow_redirects=True)
    assert "Der Lauf ist bereits beendet (succeeded)." in visible_text(main(page.get_data(as_text=True)))

    answer = api(f"/api/v1/runs/{run_id}/cancel")
    assert answer.status_code == 409
    assert answer.get_json()["error"]["message"] == "The run has already ended (succeeded)."


def test_a_full_command_is_refused_with_its_count_in_german_and_in_english_for_the_api_and_the_ledger(app, staff, api):
    first = run_of(submit(staff, "nap", {}))
    try:
        text = refused_on_the_form(staff, "nap", 409)
        assert "Dieser Befehl läuft bereits 1-mal, sein Limit; versuchen Sie es erneut, wenn ein Lauf endet." in text
        english = "This command is already running 1 time(s), its limit; try again when one finishes."
        assert refused_by_the_api(api, "nap", 409) == english
        assert [detail["message"] for detail in rejected_details(app)] == [english, english]
    finally:
        token = csrf_token_from(staff.get(f"/runs/{first}").get_data(as_text=True))
        staff.post(f"/runs/{first}/cancel", data={"csrf_token": token})
        wait_done(app, first)


def test_a_disabled_command_is_refused_in_german_and_in_english_for_the_api_and_the_ledger(app, staff, api):
    with app.app_context():
        switches.set_disabled("quick", True, actor=ADMIN, reason="maintenance")
    assert "Dieser Befehl ist von einem Administrator deaktiviert." in refused_on_the_form(staff, "quick", 409)
    english = "This command is disabled by an administrator."
    assert refused_by_the_api(api, "quick", 409) == english
    assert [detail["message"] for detail in rejected_details(app)] == [english, english]


def test_an_unavailable_command_is_refused_in_german_and_in_english_for_the_api_and_the_ledger(app, staff, api):
    text = refused_on_the_form(staff, "tasks", 503)
    assert (
        f"Dieser Befehl ist nicht verfügbar: Datenquelle 'ops' ist nicht eingerichtet ({UNSET} ist nicht gesetzt)."
        in (text)
    )
    english = f"This command is unavailable: data source 'ops' is not configured ({UNSET} is not set)."
    assert refused_by_the_api(api, "tasks", 503) == english
    assert [detail["message"] for detail in rejected_details(app)] == [english, english]


def decide(client, run_id: str, action: str):
    token = csrf_token_from(client.get(f"/runs/{run_id}").get_data(as_text=True))
    return client.post(f"/runs/{run_id}/{action}", data={"csrf_token": token}, headers=GERMAN, follow_redirects=True)


def run_json(app, run_id: str) -> dict:
    with app.app_context():
        secret = tokens.create_token(accounts.get_user("staff"), name="read", expires_days=1).secret
    answer = app.test_client().get(f"/api/v1/runs/{run_id}", headers={"Authorization": f"Bearer {secret}", **GERMAN})
    assert answer.status_code == 200
    return answer.get_json()


def test_a_denied_request_names_its_denier_in_german_and_a_late_decision_is_refused_in_german(app, staff, login):
    run_id = run_of(submit(staff, "purge", {}))
    approver = login("other")
    decide(approver, run_id, "deny")
    late = visible_text(main(decide(approver, run_id, "approve").get_data(as_text=True)))
    assert "Über diese Anfrage wurde bereits entschieden (denied)." in late

    html = german(login("staff"), f"/runs/{run_id}")
    assert "Abgelehnt von other." in visible_text(main(html)) and untranslated(main(html), "de") == []
    assert run_json(app, run_id)["error"] == "Denied by other."


def test_a_withdrawn_request_says_so_in_german(app, staff):
    run_id = run_of(submit(staff, "purge", {}))
    decide(staff, run_id, "withdraw")
    html = german(staff, f"/runs/{run_id}")
    assert "Von seinem Antragsteller zurückgezogen." in visible_text(main(html))
    assert untranslated(main(html), "de") == []
    assert run_json(app, run_id)["error"] == "Withdrawn by its requester."


def test_an_approval_the_engine_could_not_start_says_why_in_german(app, staff, login):
    run_id = run_of(submit(staff, "purge", {}))
    with app.app_context():
        switches.set_disabled("purge", True, actor=ADMIN)
    approved = decide(login("other"), run_id, "approve")
    assert "Zugestimmt, aber der Lauf konnte nicht starten" in visible_text(main(approved.get_data(as_text=True)))

    html = german(login("staff"), f"/runs/{run_id}")
    expected = "Zugestimmt, aber nicht gestartet: Dieser Befehl ist von einem Administrator deaktiviert."
    assert expected in visible_text(main(html)) and untranslated(main(html), "de") == []
    english = "Approved, but not started: This command is disabled by an administrator."
    assert run_json(app, run_id)["error"] == english
