"""My runs and All runs read alike: the same columns in the same order and words (All runs adds who and
from where), the command's title and a status badge in both, and a label on each cell for the phone's
card layout (gateway.css stacks ``table.stack`` rows below 40rem)."""

from __future__ import annotations

import re
import time

import pytest

from gateway import runs
from gateway.db.models import Run
from gateway.identity import accounts
from gateway.platform.extensions import db
from tests.browser.webcat import grant_staff, make_ops_db, write_catalogue
from tests.conftest import seed_session


@pytest.fixture
def app(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("WEB_TEST_OPS_DB_URL", make_ops_db(tmp_path))
    return make_app(GATEWAY_COMMANDS_FILE=write_catalogue(tmp_path))


def headers(html: str) -> list[str]:
    head = re.search(r"<thead>(.*?)</thead>", html, re.S).group(1)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]


def test_all_runs_has_my_runs_columns_plus_who_and_from_where(app, users):
    grant_staff(app)
    with app.app_context():
        caller = runs.Caller(user=accounts.get_user("staff"), source_ip="127.0.0.1")
        run_id = runs.start("tasks", {"status": "ok"}, caller).run.id
        deadline = time.monotonic() + 20
        while db.session.get(Run, run_id).status in runs.LIVE and time.monotonic() < deadline:
            db.session.rollback()
            time.sleep(0.05)
    staff, admin = app.test_client(), app.test_client()
    seed_session(app, staff, users["staff"].id)
    seed_session(app, admin, users["admin"].id)
    mine = staff.get("/runs").get_data(as_text=True)
    everyone = admin.get("/admin/runs").get_data(as_text=True)

    assert headers(mine) == ["Command", "Status", "Started", "Duration", "Exit code"]
    assert headers(everyone) == ["Command", "User", "Status", "Started", "Duration", "Exit code", "From", "Actions"]
    for html in (mine, everyone):
        row = re.search(
            rf'<tr>\s*<td data-label="Command"><a href="/runs/{run_id}">Tasks by status</a>.*?</tr>', html, re.S
        )
        assert row, html
        assert 'class="badge status-succeeded"' in row.group(0)
        assert re.search(r'<td data-label="Exit code" class="num">0</td>', row.group(0))
        assert '<table class="data stack">' in html
    assert '<td data-label="User">staff</td>' in everyone and '<td data-label="From">127.0.0.1</td>' in everyone
    for html in (mine, everyone):  # the same filter wording
        assert '<option value="">All commands</option>' in html and '<option value="">Any status</option>' in html
        assert ">Tasks by status</option>" in html
