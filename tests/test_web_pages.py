"""The staff web UI over HTTP (Flask test client), with real runs.

Every page and form: dashboard (commands by category, recent runs, empty
states), the generated run form and its server-side errors, refusals, the run
page (stdout/stderr, escaping, truncation, cancel, run again), query result
tables and the CSV download, history filters and paging, status tiles and
their cache, and the account page (password change, API tokens).
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gateway import runs
from gateway.catalogue import switches as command_switches
from gateway.db.models import AuditEvent, Run, UserSession
from gateway.identity import accounts, tokens
from gateway.platform.extensions import db
from tests.browser.webcat import SCRIPT_TAG, grant_staff, make_ops_db, write_catalogue
from tests.conftest import PASSWORDS, csrf_token_from, login_response

RUN_URL = re.compile(r"/runs/([0-9a-f-]{36})")


@pytest.fixture
def app(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("WEB_TEST_OPS_DB_URL", make_ops_db(tmp_path))
    monkeypatch.delenv("WEB_TEST_UNSET_DB_URL", raising=False)
    return make_app(GATEWAY_COMMANDS_FILE=write_catalogue(tmp_path), RUN_HEARTBEAT_SECONDS=1)


@pytest.fixture
def staff(app, users, login):
    grant_staff(app)
    return login("staff")


def csrf(client, path="/"):
    return csrf_token_from(client.get(path).get_data(as_text=True))


def submit(client, name, data=None, **kwargs):
    payload = {"csrf_token": csrf(client, f"/commands/{name}"), **(data or {})}
    return client.post(f"/commands/{name}", data=payload, **kwargs)


def started_run_id(response) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)
    match = RUN_URL.search(response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


def wait_done(app, run_id, timeout=20.0) -> str:
    deadline = time.monotonic() + timeout
    with app.app_context():
        while True:
            db.session.rollback()
            status = db.session.scalar(select(Run.status).where(Run.id == run_id))
            if status not in runs.LIVE or time.monotonic() > deadline:
                return status
            time.sleep(0.05)


def wait_output(app, run_id, text, timeout=10.0) -> None:
    deadline = time.monotonic() + timeout
    with app.app_context():
        while text not in runs.output_text(run_id):
            assert time.monotonic() < deadline, "output never arrived"
            db.session.rollback()
            time.sleep(0.05)


def run_count(app) -> int:
    with app.app_context():
        db.session.rollback()
        return db.session.scalar(select(func.count()).select_from(Run))


def page(client, path) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


# --- dashboard -----------------------------------------------------------------------------


def test_dashboard_lists_granted_commands_by_category_with_state(app, staff):
    html = page(staff, "/")
    tools, reports = html.index(">Tools<"), html.index(">Reports<")
    assert reports < tools  # categories in order, each with its commands
    assert "Greet people" in html and "Prints a greeting to stdout" in html
    assert "Admins only" not in html  # not granted: not shown
    nodb = html[html.index("Needs a data source") :]
    assert "Unavailable" in nodb[:200]
    assert "You have not run anything yet" in html
    assert staff.get("/commands/admin-only").status_code == 404
    assert staff.get("/commands/no-such-thing").status_code == 404


def test_a_user_without_grants_is_told_to_ask_an_admin(app, users, client):
    assert login_response(client, "other", PASSWORDS["other"]).status_code == 302
    html = page(client, "/")
    assert "No commands are granted to you yet" in html and "ask an admin" in html
    assert "Status" not in html.split("<main", 1)[1].split("My commands")[0]  # no tiles either


def test_admin_sees_every_command(app, users, login):
    html = page(login("admin"), "/")
    assert "Admins only" in html and "Greet people" in html


# --- the run form --------------------------------------------------------------------------


def test_the_form_is_generated_from_the_parameter_schema(app, staff):
    html = page(staff, "/commands/greet")
    assert re.search(r'<input type="text" id="param-who" name="who" value=""\s+required', html)
    assert re.search(r'type="number" id="param-count" name="count" value="2"\s+min="1"\s+max="5"\s+step="1"', html)
    assert re.search(r'type="checkbox" id="param-loud" name="loud" value="true"\s*>', html)  # default false
    assert 'type="date" id="param-when" name="when" value="2024-01-31"' in html
    assert re.search(r'<textarea id="param-items" name="items"', html) and "One item per line" in html
    assert re.search(r'<select id="param-mode" name="mode"', html)
    assert '<option value="fast" selected>' in html and '<option value="slow" >' in html
    assert 'type="password" id="param-pin" name="pin" value=""' in html and ">PIN<" in html
    assert "Letters and spaces only." in html  # help text
    assert 'class="required"' in html.split('for="param-who"')[1].split("</label>")[0]  # required marker
    assert 'class="required"' not in html.split('for="param-count"')[1].split("</label>")[0]
    ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="(param-[^"]+)"', html))
    assert ids == {f"param-{n}" for n in ("who", "count", "loud", "when", "items", "mode", "pin")}
    for dom_id in ids:
        assert f'for="{dom_id}"' in html, f"no label for {dom_id}"


def test_submitting_the_form_starts_a_run_and_shows_both_streams(app, staff):
    response = submit(
        staff, "greet", {"who": "Ann Lee", "count": "3", "loud": "true", "items": "ab\n\ncd\n", "pin": "hush-1234"}
    )
    run_id = started_run_id(response)
    assert wait_done(app, run_id) == "succeeded"
    html = page(staff, f"/runs/{run_id}")
    assert "hello Ann Lee 3 true --when=2024-01-31 [&#39;ab&#39;, &#39;cd&#39;]" in html
    stdout = html.index('<span class="out-stdout">hello')
    stderr = html.index('<span class="out-stderr">careful')
    assert stdout < stderr  # arrival order, visually distinct
    assert "Succeeded" in html and '<dd id="run-exit">exit code 0 (success)</dd>' in html
    assert '<p class="legend muted" id="output-legend">' in html  # error output came: the legend says which is which
    assert "hush-1234" not in html  # the secret is masked everywhere
    with app.app_context():
        run = db.session.get(Run, run_id)
        assert run.params["pin"] == "***" and run.params["items"] == ["ab", "cd"] and run.params["loud"] is True


def test_an_unchecked_box_is_false_and_blank_fields_take_defaults(app, staff):
    run_id = started_run_id(submit(staff, "greet", {"who": "Bo", "count": "", "when": ""}))
    assert wait_done(app, run_id) == "succeeded"
    with app.app_context():
        params = db.session.get(Run, run_id).params
    assert params["loud"] is False and params["count"] == 2 and params["when"] == "2024-01-31"


def test_invalid_fields_are_reported_next_to_each_field_and_nothing_runs(app, staff):
    before = run_count(app)
    response = submit(staff, "greet", {"who": "R2D2", "count": "9", "items": "ok\nBAD", "when": "2024-02-31"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Please correct the fields marked below." in html
    for field, message in [
        ("who", "does not match the required pattern"),
        ("count", "must be at most 5"),
        ("items", "line 2: does not match the required pattern"),
        ("when", "is not a real date"),
    ]:
        block = html.split(f'id="param-{field}"')[1].split('<div class="field')[0]
        assert message in block, field
    assert 'value="R2D2"' in html and 'value="9"' in html  # what was typed stays
    response = submit(staff, "greet", {})
    assert "is required" in response.get_data(as_text=True).split('id="param-who"')[1]
    assert run_count(app) == before


def test_a_form_without_its_csrf_token_is_refused(app, staff):
    response = staff.post("/commands/greet", data={"who": "Ann"})
    assert response.status_code == 400 and "form expired" in response.get_data(as_text=True)
    assert run_count(app) == 0


def test_refusals_show_their_reason_with_the_right_status(app, staff, users):
    html = page(staff, "/commands/nodb")
    assert "unavailable" in html and "WEB_TEST_UNSET_DB_URL is not set" in html
    assert re.search(r"<fieldset\s+disabled>", html)
    response = submit(staff, "nodb")
    assert response.status_code == 503 and "unavailable" in response.get_data(as_text=True)
    with app.app_context():
        command_switches.set_disabled("greet", True, actor={"id": users["admin"].id, "name": "admin"}, reason="maint")
    html = page(staff, "/commands/greet")
    assert "An administrator has disabled this command: maint" in html and re.search(r"<fieldset\s+disabled>", html)
    response = submit(staff, "greet", {"who": "Ann"})
    assert response.status_code == 409 and "disabled by an administrator" in response.get_data(as_text=True)
    assert submit(staff, "admin-only").status_code == 404
    assert run_count(app) == 0


def test_an_uploaded_file_reaches_the_command(app, staff):
    content = b"some file content\n"
    data = {"csrf_token": csrf(staff, "/commands/checksum"), "upload": (io.BytesIO(content), "notes.txt")}
    html = page(staff, "/commands/checksum")
    assert 'enctype="multipart/form-data"' in html and 'type="file" id="param-upload"' in html
    run_id = started_run_id(staff.post("/commands/checksum", data=data, content_type="multipart/form-data"))
    assert wait_done(app, run_id) == "succeeded"
    assert hashlib.sha256(content).hexdigest() in page(staff, f"/runs/{run_id}")


# --- the run page --------------------------------------------------------------------------


def test_command_output_is_shown_as_text_never_markup(app, staff):
    run_id = started_run_id(submit(staff, "scripty"))
    assert wait_done(app, run_id) == "succeeded"
    html = page(staff, f"/runs/{run_id}")
    assert SCRIPT_TAG not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt; &amp; done" in html


def test_query_results_render_as_a_table_and_download_as_csv(app, staff):
    run_id = started_run_id(submit(staff, "tasks", {"status": "ok"}))
    assert wait_done(app, run_id) == "succeeded"
    html = page(staff, f"/runs/{run_id}")
    table = html.split('<table class="data result">')[1].split("</table>")[0]
    assert re.findall(r'<th scope="col">(\w+)</th>', table) == ["id", "name", "note", "score"]
    assert '<td class="num">1.5</td>' in table and '<td class="num">20.0</td>' in table
    assert '<td class="null">NULL</td>' in table  # NULL ...
    assert '<td class="blank"></td>' in table  # ... is not the empty string
    assert "&lt;i&gt;tag&lt;/i&gt;" in table and "3 rows" in html
    with app.app_context():
        digest = db.session.get(Run, run_id).output_sha256
    assert digest in html.split('id="result-facts"')[1].split("</details>")[0]  # size and checksum, folded
    response = staff.get(f"/runs/{run_id}.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    lines = response.get_data(as_text=True).splitlines()
    assert lines == ["id,name,note,score", "1,backup,,1.5", "2,'=HYPERLINK(1),,20.0", "3,<i>tag</i>,fine,"]


def test_a_shell_run_has_no_csv(app, staff):
    run_id = started_run_id(submit(staff, "scripty"))
    wait_done(app, run_id)
    assert staff.get(f"/runs/{run_id}.csv").status_code == 404


def test_truncated_output_says_so_with_the_true_size_and_digest(app, staff):
    run_id = started_run_id(submit(staff, "chatty"))
    wait_done(app, run_id)
    html = page(staff, f"/runs/{run_id}")
    with app.app_context():
        run = db.session.get(Run, run_id)
        assert run.output_truncated
        size, digest = run.output_bytes, run.output_sha256
    assert "The output was cut off" in html and f"{size} bytes in total" in html and digest in html


def test_a_running_run_can_be_cancelled_with_a_post(app, staff):
    run_id = started_run_id(submit(staff, "long-sleep"))
    wait_output(app, run_id, "started")
    html = page(staff, f"/runs/{run_id}")
    assert "Running" in html and 'id="cancel-form"' in html and "reload the page to see more output" in html
    assert staff.get(f"/runs/{run_id}/cancel").status_code == 405  # nothing changes on GET
    response = staff.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf_token_from(html)})
    assert response.status_code == 303
    assert wait_done(app, run_id) == "cancelled"
    html = page(staff, f"/runs/{run_id}")
    assert "Cancellation requested" in html and "Cancelled" in html and 'id="cancel-form"' not in html


def test_run_again_is_a_form_prefilled_with_the_parameters_but_not_secrets(app, staff):
    run_id = started_run_id(submit(staff, "greet", {"who": "Ann", "count": "4", "items": "ab\ncd", "pin": "hush-4821"}))
    wait_done(app, run_id)
    html = page(staff, f"/runs/{run_id}")
    again = html.split('<form method="get" action="/commands/greet">')[1].split("</form>")[0]
    assert 'name="who" value="Ann"' in again and 'name="count" value="4"' in again
    assert 'name="items" value="ab\ncd"' in again and 'name="pin"' not in again
    form = page(staff, "/commands/greet?who=Ann&count=4&items=ab%0Acd&pin=hush-4821")
    assert 'id="param-who" name="who" value="Ann"' in form and 'name="count" value="4"' in form
    assert ">ab\ncd</textarea>" in form and 'id="param-pin" name="pin" value=""' in form
    assert "hush-4821" not in form  # a word, not digits: a random CSRF token may hold any digits


def test_runs_of_others_are_invisible_but_shared_cached_results_hide_who_ran_them(app, users, client):
    grant_staff(app)
    assert login_response(client, "staff", PASSWORDS["staff"]).status_code == 302
    private = started_run_id(submit(client, "scripty"))
    response = client.post("/tiles/board/refresh", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    with app.app_context():
        shared = db.session.scalar(select(Run.id).where(Run.command == "board"))
    wait_done(app, private)
    wait_done(app, shared)
    assert "By</dt><dd>staff" in page(client, f"/runs/{shared}")
    client.post("/logout", data={"csrf_token": csrf(client)})
    assert login_response(client, "other", PASSWORDS["other"]).status_code == 302
    assert client.get(f"/runs/{private}").status_code == 404
    assert client.get(f"/runs/{private}.csv").status_code == 404
    html = page(client, f"/runs/{shared}")
    assert "staff" not in html.split("<main", 1)[1] and "127.0.0.1" not in html
    assert "shared recent result" in html


# --- history -------------------------------------------------------------------------------


@pytest.mark.both_engines  # runs: keyset paging and filters are SQL
def test_history_filters_and_pages_through_my_runs(app, staff, monkeypatch):
    from gateway.web import history

    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    ids = [started_run_id(submit(staff, "scripty")) for _ in range(3)]
    failed = started_run_id(submit(staff, "tasks", {"status": "bad"}))
    for run_id in [*ids, failed]:
        wait_done(app, run_id)
    first = page(staff, "/runs?command=scripty")
    assert first.count('href="/runs/') == 2 and ids[2] in first and ids[1] in first
    older = re.search(r'href="(/runs\?[^"]*cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = page(staff, older)
    assert ids[0] in second and ids[2] not in second and "Older runs" not in second
    assert failed not in page(staff, "/runs?command=scripty&status=succeeded")
    assert "No runs match these filters." in page(staff, "/runs?status=lost")
    # A bad filter or position is a 400 page naming the parameter (and repeating nothing of the value).
    for query, named in (("cursor=garbage<b>", "The cursor parameter"), ("status=bogus<b>", "The status parameter")):
        refused = staff.get(f"/runs?{query}")
        said = refused.get_data(as_text=True)
        assert refused.status_code == 400 and named in said and "garbage" not in said and "bogus" not in said


def test_history_shows_only_my_runs_even_for_an_admin(app, users, client):
    grant_staff(app)
    login_response(client, "staff", PASSWORDS["staff"])
    mine = started_run_id(submit(client, "scripty"))
    wait_done(app, mine)
    client.post("/logout", data={"csrf_token": csrf(client)})
    login_response(client, "admin", PASSWORDS["admin"])
    html = page(client, "/runs")
    assert mine not in html and "You have not run anything yet" in html
    assert client.get(f"/runs/{mine}").status_code == 200  # admins may still open it


# --- status tiles --------------------------------------------------------------------------


def test_a_dashboard_tile_shows_the_latest_result_and_refreshes_through_the_cache(app, staff):
    html = page(staff, "/")
    assert 'id="tile-board"' in html and "No result yet" in html
    response = staff.post("/tiles/board/refresh", data={"csrf_token": csrf_token_from(html)})
    assert response.status_code == 303 and response.headers["Location"].endswith("/#tile-board")
    html = page(staff, "/")
    tile = html.split('id="tile-board"')[1].split("</section>")[0]
    assert re.search(r'as of <time [^>]*data-show="local"[^>]*>[^<]+ UTC</time>', tile)  # the browser shows it locally
    assert re.search(r'<span class="age"><time [^>]*data-show="age"[^>]*>just now</time>', tile)
    assert '<th scope="col">status</th>' in tile and '<td class="num">3</td>' in tile
    fragment = staff.post(
        "/tiles/board/refresh", data={"csrf_token": csrf_token_from(html)}, headers={"X-Gateway-Background": "1"}
    )
    assert fragment.status_code == 200 and fragment.get_data(as_text=True).lstrip().startswith('<div class="tile-body"')
    assert run_count(app) == 1  # the second refresh reused the cached result
    assert staff.get("/tiles/board/refresh").status_code == 405
    assert staff.get("/tiles/greet").status_code == 404  # not a dashboard report


def test_tile_refreshes_by_the_page_do_not_extend_the_session(app, staff):
    def rewind_and_read(minutes_ago=None):
        with app.app_context():
            db.session.rollback()
            record = db.session.scalars(select(UserSession).where(UserSession.revoked_at.is_(None))).one()
            if minutes_ago is not None:
                record.last_seen_at = record.last_seen_at - timedelta(minutes=minutes_ago)
                db.session.commit()
            return record.last_seen_at

    before = rewind_and_read(5)
    response = staff.get("/tiles/board", headers={"X-Gateway-Background": "1"})
    assert response.status_code == 200 and "No result yet" in response.get_data(as_text=True)
    assert rewind_and_read() == before
    page(staff, "/")
    assert rewind_and_read() > before  # a real page view does count as activity


# --- account -------------------------------------------------------------------------------


def tokens_still_work(app, secret: str) -> bool:
    with app.app_context():
        return tokens.authenticate(secret) is not None


NEW_TOKEN = re.compile(r'id="new-token" class="token" value="(gw_[^"]+)"')


def new_token(client, csrf_token: str, password: str | None = PASSWORDS["staff"], **fields: str):
    """Submit the account page's new-token form (as staff: the current password is asked for)."""
    data = {"csrf_token": csrf_token, "name": "ci", "expires": "30", **fields}
    if password is not None:
        data["current_password"] = password
    return client.post("/account/tokens", data=data)


def test_a_new_token_is_shown_once_then_only_its_prefix(app, staff):
    html = page(staff, "/account")
    assert "You have no API tokens." in html
    response = new_token(staff, csrf_token_from(html))
    # Post/redirect/get: the POST answers with a redirect, the page it leads to shows the token once.
    assert response.status_code == 303 and "gw_" not in response.get_data(as_text=True)
    assert "gw_" not in response.headers.get("Set-Cookie", "")  # the cookie carries only a random pad
    secret = NEW_TOKEN.search(page(staff, response.headers["Location"])).group(1)
    html = page(staff, "/account")
    prefix = secret.split("_")[1]
    assert secret not in html and f"gw_{prefix}_…" in html and "<td>ci</td>" in html and "never" in html
    with app.app_context():
        assert tokens.authenticate(secret).username == "staff"
        token_id = tokens.tokens_of(accounts.find_user("staff"))[0].id
    assert staff.get(f"/account/tokens/{token_id}/revoke").status_code == 405
    # The browser form asks first (the question says it cannot be undone); only confirm=yes revokes.
    asked = staff.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_token_from(html)})
    assert asked.status_code == 200 and "cannot be undone" in asked.get_data(as_text=True)
    assert tokens_still_work(app, secret)
    confirm = {"csrf_token": csrf_token_from(html), "confirm": "yes"}
    response = staff.post(f"/account/tokens/{token_id}/revoke", data=confirm)
    assert response.status_code == 303
    assert "The token was revoked" in page(staff, "/account")
    with app.app_context():
        assert tokens.authenticate(secret) is None
    bad = new_token(staff, csrf_token_from(html), name="", expires="90")
    assert bad.status_code == 400 and "Give the token a name" in bad.get_data(as_text=True)
    assert 'id="token-name-error"' in bad.get_data(as_text=True)


def test_refreshing_after_creating_a_token_creates_no_second_one(app, staff):
    """The browser's refresh repeats the GET it was redirected to, not the POST: one token, shown once."""

    response = new_token(staff, csrf(staff, "/account"))
    first = page(staff, response.headers["Location"])
    refreshed = page(staff, response.headers["Location"])
    assert NEW_TOKEN.search(first) and not NEW_TOKEN.search(refreshed)
    with app.app_context():
        assert len(tokens.tokens_of(accounts.find_user("staff"))) == 1


def test_a_replayed_cookie_does_not_show_the_token_again(app, staff):
    """Whoever holds a copy of the cookie from before the token was shown finds nothing either."""
    response = new_token(staff, csrf(staff, "/account"))
    copy = app.test_client()
    copy.set_cookie("gateway_session", staff.get_cookie("gateway_session").value)
    assert NEW_TOKEN.search(page(staff, response.headers["Location"]))
    assert not NEW_TOKEN.search(page(copy, "/account"))


def test_i_cannot_revoke_someone_elses_token(app, users, login):

    with app.app_context():
        issued = tokens.create_token(accounts.find_user("admin"), name="admin's")
        token_id = issued.token.id
    client = login("staff")
    data = {"csrf_token": csrf(client, "/account"), "confirm": "yes"}
    response = client.post(f"/account/tokens/{token_id}/revoke", data=data)
    assert response.status_code == 404
    with app.app_context():
        assert tokens.authenticate(issued.secret) is not None


def test_changing_my_password_checks_the_current_one_and_signs_me_out(app, users, login, client):
    login("staff")
    token = csrf(client, "/account")
    new = "a-brand-new-password-42"
    wrong = client.post(
        "/account/password",
        data={"csrf_token": token, "current_password": "nope", "new_password": new, "confirm_password": new},
    )
    assert wrong.status_code == 400 and "This is not your current password." in wrong.get_data(as_text=True)
    mismatch = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORDS["staff"],
            "new_password": new,
            "confirm_password": "x",
        },
    )
    assert mismatch.status_code == 400 and "not the same" in mismatch.get_data(as_text=True)
    short = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORDS["staff"],
            "new_password": "short",
            "confirm_password": "short",
        },
    )
    assert short.status_code == 400 and "at least 12 characters" in short.get_data(as_text=True)
    done = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORDS["staff"],
            "new_password": new,
            "confirm_password": new,
        },
    )
    assert done.status_code == 303 and done.headers["Location"].endswith("/login")
    assert client.get("/").status_code == 302  # every session ended, this one included
    assert login_response(client, "staff", PASSWORDS["staff"]).status_code == 401
    assert login_response(client, "staff", new).status_code == 302


def change_password(client, token: str, current: str):
    new = "a-brand-new-password-42"
    data = {"csrf_token": token, "current_password": current, "new_password": new, "confirm_password": new}
    return client.post("/account/password", data=data)


@pytest.mark.both_engines  # throttles: the sign-in throttle per engine
def test_guessing_the_current_password_counts_toward_the_sign_in_lock(make_app, users):
    """A stolen session cannot guess the password on the account page faster than at sign-in."""
    app = make_app(LOGIN_MAX_ATTEMPTS=3, LOGIN_LOCK_SECONDS=60)
    client = app.test_client()
    assert login_response(client, "staff", PASSWORDS["staff"]).status_code == 302
    token = csrf(client, "/account")
    for _ in range(3):
        assert change_password(client, token, "a-wrong-guess").status_code == 400
    # Locked now: even the right current password is refused, without being checked, and sign-in is locked too.
    locked = change_password(client, token, PASSWORDS["staff"])
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "Too many failed sign-in attempts" in locked.get_data(as_text=True)
    assert login_response(app.test_client(), "staff", PASSWORDS["staff"]).status_code == 401
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.event.in_(["auth.login_failed", "auth.locked"]))
            .order_by(AuditEvent.seq)
        ).all()
    failed = [row for row in rows if row.event == "auth.login_failed"]
    assert [row.outcome for row in failed][:4] == ["invalid", "invalid", "invalid", "locked"]
    assert all(row.detail == {"method": "local", "via": "password_change"} for row in failed[:4])
    assert [row.actor_name for row in rows if row.event == "auth.locked"] == ["staff"]
    assert all("a-wrong-guess" not in str(row.detail) for row in rows)


def test_the_account_page_password_check_shares_the_sign_in_rate_limit(make_app, users):
    app = make_app(LOGIN_RATE_LIMIT="3/minute", LOGIN_MAX_ATTEMPTS=100)
    client = app.test_client()
    assert login_response(client, "staff", PASSWORDS["staff"]).status_code == 302
    token = csrf(client, "/account")
    statuses = [change_password(client, token, "a-wrong-guess").status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


# --- quality -------------------------------------------------------------------------------


def test_pages_need_sign_in_and_assets_are_local(app, users, client):
    for path in ["/", "/runs", "/account", "/commands/greet", "/tiles/board"]:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    assert client.get("/static/favicon.svg").status_code == 200
    assert client.get("/static/gateway.js").status_code == 200
    html = client.get("/login").get_data(as_text=True)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no CDN


def test_no_inline_script_or_style_on_any_page(app, staff):
    run_id = started_run_id(submit(staff, "tasks", {"status": "ok"}))
    wait_done(app, run_id)
    for path in ["/", "/runs", "/account", "/commands/greet", f"/runs/{run_id}", "/tiles/board"]:
        html = page(staff, path)
        assert "<style" not in html and " style=" not in html, path
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path  # only external scripts
        assert not re.search(r"\son[a-z]+=", html), path  # no inline event handlers
