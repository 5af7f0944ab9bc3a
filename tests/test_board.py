"""The dashboard's command cards and the run page's finished state, over HTTP with real runs.

Cards: what each offers (an inline Run that is a CSRF-protected POST to the form's own
start route, "Run…" for commands with parameters, "Request…" for commands needing
approval), the viewer's latest status and its age, and the filter box for long lists.
Run page: parameters shown (secrets masked), the exit explained (exit code, signal by
name, timeout, who cancelled and when), size and checksum in a details block, the
stdout/stderr legend only with error output, and the output as a .txt download that
only those who may view the run get.
"""

from __future__ import annotations

import re
import sys
import textwrap

import pytest
from sqlalchemy import select

from gateway import runs
from gateway.db.models import Run
from gateway.identity import groups
from gateway.platform.extensions import db
from gateway.web.runpage import download_name, exit_code_text
from tests.conftest import PASSWORDS, csrf_token_from, login_response
from tests.test_web_pages import wait_done, wait_output

PY = sys.executable
RUN_URL = re.compile(r"/runs/([0-9a-f-]{36})")

CATALOGUE = textwrap.dedent(
    f"""
    commands:
      - name: hello
        title: Say hello
        description: Prints hello and nothing else.
        category: Tools
        kind: shell
        argv: ["{PY}", "-c", "print('hello')"]
      - name: greet
        title: Greet someone
        description: Prints a greeting to one person.
        category: Tools
        kind: shell
        argv: ["{PY}", "-c", "import sys; print('hi', sys.argv[1]); print('warned', file=sys.stderr)", "{{who}}"]
        params:
          who: {{type: string, required: true}}
          pin: {{type: string, secret: true, label: "PIN"}}
      - name: exit-two
        title: Exits with two
        category: Tools
        kind: shell
        argv: ["{PY}", "-c", "import sys; sys.exit(2)"]
      - name: killed
        title: Killed by a signal
        category: Tools
        kind: shell
        argv: ["{PY}", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
      - name: too-slow
        title: Too slow
        category: Tools
        kind: shell
        argv: ["{PY}", "-c", "import time; time.sleep(30)"]
        timeout: 1
      - name: long-sleep
        title: Waits a minute
        category: Tools
        kind: shell
        argv: ["{PY}", "-u", "-c", "import time; print('waiting'); time.sleep(60)"]
        timeout: 90
      - name: purge
        title: Purge old data
        description: Needs a second person.
        category: Danger
        kind: shell
        argv: ["{PY}", "-c", "print('purged')"]
        approval: {{approvers: [leads]}}
      - name: secret-thing
        title: Not for staff
        category: Danger
        kind: shell
        argv: ["true"]
    """
)
GRANTED = ["hello", "greet", "exit-two", "killed", "too-slow", "long-sleep", "purge"]


def many_commands(count: int) -> str:
    return "commands:\n" + "".join(
        f"  - {{name: c{i:02d}, title: Command {i:02d}, category: Many, kind: shell, argv: ['true']}}\n"
        for i in range(count)
    )


def grant(app, names: list[str]) -> None:
    with app.app_context():
        groups.create_group("ops")
        groups.create_group("leads")
        for name in names:
            groups.add_grant("ops", name)
        groups.add_member("ops", "staff")
        groups.add_member("ops", "other")


@pytest.fixture
def app(make_app, tmp_path):
    path = tmp_path / "board-commands.yaml"
    path.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=path, RUN_HEARTBEAT_SECONDS=1)


@pytest.fixture
def staff(app, users, login):
    grant(app, GRANTED)
    return login("staff")


def signed_in(app, name: str):
    """A browser of its own, signed in through the form."""
    client = app.test_client()
    assert login_response(client, name, PASSWORDS[name]).status_code == 302
    return client


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def card(html: str, name: str) -> str:
    start = html.index(f'id="command-{name}"')
    return html[start : html.index("</li>", start)]


def start(client, name: str, data: dict[str, str] | None = None) -> str:
    token = csrf_token_from(page(client, "/"))
    response = client.post(f"/commands/{name}", data={"csrf_token": token, **(data or {})})
    assert response.status_code == 303, response.get_data(as_text=True)
    match = RUN_URL.search(response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


# --- the cards ------------------------------------------------------------------------------


def test_each_card_offers_the_action_its_command_allows(app, staff):
    html = page(staff, "/")
    hello = card(html, "hello")
    assert "Say hello" in hello and "Prints hello and nothing else." in hello
    assert '<form method="post" action="/commands/hello" class="run-inline">' in hello
    assert 'name="csrf_token"' in hello and "Not run by you yet" in hello
    greet = card(html, "greet")
    assert 'class="run-inline"' not in greet and 'href="/commands/greet">Run…' in greet
    purge = card(html, "purge")
    assert "Needs approval" in purge and 'href="/commands/purge">Request…' in purge
    assert 'class="run-inline"' not in purge  # its Run goes through the form: a request, not a run
    assert "Not for staff" not in html  # not granted: no card
    assert 'id="command-filter-box"' not in html  # seven cards need no filter


@pytest.mark.both_engines  # the latest run per card is a window query
def test_an_inline_run_is_one_post_that_lands_on_the_run_page_and_the_card_shows_it(app, staff):
    run_id = start(staff, "hello")  # exactly what the card's form sends: the CSRF token, nothing else
    assert wait_done(app, run_id) == "succeeded"
    hello = card(page(staff, "/"), "hello")
    assert 'data-status="succeeded"' in hello and 'data-show="age"' in hello
    assert f'href="/runs/{run_id}"' in hello
    refused = staff.post("/commands/hello", data={})  # no CSRF token: refused, nothing runs
    assert refused.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(Run.id).where(Run.command == "hello", Run.id != run_id)) is None


@pytest.mark.both_engines
def test_the_card_shows_only_my_own_latest_run(app, staff):
    mine = start(staff, "exit-two")
    wait_done(app, mine)
    other = signed_in(app, "other")
    assert "Not run by you yet" in card(page(other, "/"), "exit-two")
    assert 'data-status="failed"' in card(page(staff, "/"), "exit-two")


def test_the_filter_box_appears_only_for_more_than_twelve_commands(make_app, users, tmp_path):
    for count, shown in ((12, False), (13, True)):
        path = tmp_path / f"many-{count}.yaml"
        path.write_text(many_commands(count))
        html = page(signed_in(make_app(GATEWAY_COMMANDS_FILE=path), "admin"), "/")  # an admin sees every command
        assert ('id="command-filter-box"' in html) is shown, count
        assert html.count('class="command-card"') == count


# --- the run page ---------------------------------------------------------------------------


def test_parameters_are_shown_open_with_secrets_masked_and_the_legend_only_with_error_output(app, staff):
    run_id = start(staff, "greet", {"who": "Ann", "pin": "hush-7781"})
    wait_done(app, run_id)
    html = page(staff, f"/runs/{run_id}")
    params = html[html.index('id="run-params"') :]
    params = params[: params.index("</div>\n")]
    assert "<details" not in params and "Ann" in params and "*** (secret, not shown)" in params
    assert "hush-7781" not in html
    assert '<p class="legend muted" id="output-legend">' in html
    quiet = start(staff, "hello")
    wait_done(app, quiet)
    html = page(staff, f"/runs/{quiet}")
    assert '<p class="legend muted" id="output-legend" hidden>' in html  # nothing on stderr: no legend
    facts = html[html.index('id="output-facts"') :]
    with app.app_context():
        run = db.session.get(Run, quiet)
        assert f"{run.output_bytes} bytes" in facts and run.output_sha256 in facts[: facts.index("</details>")]
    assert "<summary>Size and checksum</summary>" in facts
    assert 'data-copy="#output"' in html and f'href="/runs/{quiet}.txt"' in html


@pytest.mark.parametrize(
    ("name", "status", "explained"),
    [
        ("hello", "succeeded", "exit code 0 (success)"),
        ("exit-two", "failed", "exit code 2"),
        ("killed", "failed", "killed by SIGKILL"),
        ("too-slow", "timed_out", "timed out after 1 s"),
    ],
)
def test_the_exit_is_explained(app, staff, name, status, explained):
    run_id = start(staff, name)
    assert wait_done(app, run_id) == status
    html = page(staff, f"/runs/{run_id}")
    assert f'<dd id="run-exit">{explained}' in html
    assert 'id="run-ended"' in html


def test_a_cancelled_run_says_how_it_stopped_who_cancelled_it_and_when(app, staff):
    run_id = start(staff, "long-sleep")
    wait_output(app, run_id, "waiting")
    html = page(staff, f"/runs/{run_id}")
    assert '<span class="no-js">This run is still going: reload the page to see more output.</span>' in html
    assert staff.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf_token_from(html)}).status_code == 303
    assert wait_done(app, run_id) == "cancelled"
    exit_text = page(staff, f"/runs/{run_id}").split('<dd id="run-exit">', 1)[1].split("</dd>", 1)[0]
    assert re.match(r"stopped by SIG(TERM|KILL) — cancelled by staff at <time datetime=", exit_text), exit_text


def test_exit_codes_read_as_words():
    assert exit_code_text(-15) == "killed by SIGTERM"
    assert exit_code_text(137) == "exit code 137 (128 + SIGKILL)"
    assert exit_code_text(255) == "exit code 255"
    assert exit_code_text(-99) == "killed by signal 99"


def test_download_names_are_safe():
    run = Run(id="3f2a0c4e-8a8e-4f6a-9a77-0c1d2e3f4a5b", command='a"b/../c d')
    assert download_name(run, "txt") == "a-b-..-c-d-3f2a0c4e-8a8e-4f6a-9a77-0c1d2e3f4a5b.txt"


def test_the_output_downloads_as_text_for_whoever_may_view_the_run(app, staff):
    run_id = start(staff, "greet", {"who": "Bo"})
    wait_done(app, run_id)
    response = staff.get(f"/runs/{run_id}.txt")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="greet-{run_id}.txt"'
    with app.app_context():
        assert response.get_data(as_text=True) == runs.output_text(run_id)
    assert "hi Bo" in response.get_data(as_text=True) and "warned" in response.get_data(as_text=True)
    assert signed_in(app, "other").get(f"/runs/{run_id}.txt").status_code == 404  # as if it did not exist
    assert signed_in(app, "admin").get(f"/runs/{run_id}.txt").status_code == 200
