"""A dependent list in a real browser: Debian's Chromium against the real app (SQLite), no console error.

Pick a cluster and the host list follows it (the form's script asks the choices
route, saying "Loading…" meanwhile); a long list gets a search box; the chosen
values reach the run and its page.  Past the user's ``CHOICES_RATE_LIMIT`` the
list says it could not be loaded, and the form still works by submitting.  Without JavaScript the same form works by
re-rendering on submit (tests/test_choices.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_web_browser import console, expected_console, page, sign_in  # noqa: F401
from tests.test_choices import app_on, sqlite_source

pytestmark = pytest.mark.slow

CATALOGUE = """
datasources:
  ops: {url_env: CHOICES_BROWSER_OPS_DB_URL}
commands:
  - {name: clusters, title: Clusters, kind: query, datasource: ops, cache_seconds: 60,
     sql: "SELECT DISTINCT cluster FROM hosts ORDER BY cluster"}
  - name: hosts
    title: Hosts of a cluster
    kind: query
    datasource: ops
    sql: "SELECT name FROM hosts WHERE cluster = :cluster ORDER BY name"
    params:
      cluster: {type: string, required: true}
    cache_seconds: 60
  - name: check-host
    title: Check a host
    kind: shell
    argv: ["echo", "checked", "{cluster}", "{host}"]
    params:
      cluster: {type: choice, required: true, choices_from: {command: clusters, column: cluster}}
      host: {type: choice, required: true, depends_on: cluster, choices_from: {command: hosts, column: name}}
"""
HOSTS = [("small", "small-a"), ("small", "small-b")] + [("big", f"big-{n:02d}") for n in range(1, 21)]


@pytest.fixture
def choices_limit() -> str | None:
    """The app's CHOICES_RATE_LIMIT when a test sets one (parametrize), else the default."""
    return None


@pytest.fixture
def base_url(make_app, users, tmp_path, monkeypatch, choices_limit) -> Iterator[str]:
    from werkzeug.serving import make_server

    url = sqlite_source(tmp_path / "hosts.db", "hosts (cluster TEXT, name TEXT)", HOSTS)
    monkeypatch.setenv("CHOICES_BROWSER_OPS_DB_URL", url)
    app = app_on(make_app, tmp_path, CATALOGUE, ("check-host",))
    if choices_limit is not None:
        app.config["CHOICES_RATE_LIMIT"] = choices_limit
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = base
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join(5)


def host_options(page: Page) -> list[str]:  # noqa: F811
    return page.locator("#param-host option").evaluate_all("options => options.map(o => o.value).filter(v => v)")


def test_the_host_list_follows_the_cluster_and_a_long_list_is_searchable(page: Page):  # noqa: F811
    sign_in(page)
    page.goto("/commands/check-host")
    host = page.locator("#param-host")
    expect(page.locator('[data-list-note="host"]')).to_have_text("Choose cluster first.")
    assert host_options(page) == []
    # Record every state the host field's note goes through, to see the loading state.
    page.evaluate(
        """() => { window.notes = [];
        new MutationObserver(() => window.notes.push(document.querySelector('[data-list-note="host"]').textContent))
          .observe(document.querySelector('[data-list-note="host"]'), {childList: true, characterData: true, subtree: true}); }"""
    )
    page.get_by_label("Cluster").select_option("small")
    expect(host.locator("option[value='small-b']")).to_have_count(1)
    assert host_options(page) == ["small-a", "small-b"]
    assert "Loading…" in page.evaluate("window.notes")
    expect(page.locator("input.choice-search")).to_have_count(0)  # two hosts: nothing to search

    page.get_by_label("Cluster").select_option("big")
    expect(host.locator("option[value='big-20']")).to_have_count(1)
    assert len(host_options(page)) == 20 and "small-a" not in host_options(page)
    search = page.get_by_label("Search the choices of Host")
    search.fill("big-1")
    visible = host.locator("option:not([hidden])").evaluate_all("options => options.map(o => o.value).filter(v => v)")
    assert visible == [f"big-{n}" for n in range(10, 20)]
    host.select_option("big-17")
    page.get_by_role("button", name="Run", exact=True).click()

    expect(page.locator("#run[data-live='0']:not([data-streaming])")).to_have_count(1)
    expect(page.locator("pre.output")).to_contain_text("checked big big-17")
    expect(page.locator("#run-params")).to_contain_text("big-17")  # shown, not collapsed
    # "Run again" opens the form with both values chosen, the host list for that cluster.
    page.get_by_role("button", name="Run again with these parameters").click()
    expect(page.get_by_label("Cluster")).to_have_value("big")
    expect(host).to_have_value("big-17")
    assert len(host_options(page)) == 20


@pytest.mark.parametrize("choices_limit", ["1/minute"])
def test_a_list_past_the_rate_limit_says_it_failed_and_the_form_still_works(page: Page, expected_console):  # noqa: F811
    # Chromium logs the refused fetch, and the submit without a host that comes back 400 with the list.
    expected_console.extend(["status of 429", "status of 400"])
    sign_in(page)
    page.goto("/commands/check-host")
    host = page.locator("#param-host")
    note = page.locator('[data-list-note="host"]')
    page.get_by_label("Cluster").select_option("small")
    expect(host.locator("option[value='small-b']")).to_have_count(1)

    page.get_by_label("Cluster").select_option("big")  # the second list this minute: 429
    expect(note).to_have_text("The choices could not be loaded; submit the form to try again.")
    assert host_options(page) == []
    expect(host).to_be_enabled()
    # Submitting (no host chosen: 400) re-renders the form with the list for the cluster sent, server-side.
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#param-host option[value='big-20']")).to_have_count(1)
