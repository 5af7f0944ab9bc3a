"""Uploads under RUN_AS_USER: the command can read the file it was given, whichever surface it came through.

The web form and Shell2HTTP's multipart ``@file`` store uploads the same way
(``uploads.store_uploads``): a private folder and files owned by the run-as
account.  Before, Shell2HTTP's files stayed the gateway's (mode 0600), so
``cat @file`` failed with Permission denied.
"""

from __future__ import annotations

import io
import json
import pwd
import textwrap
from pathlib import Path

import pytest

from gateway import runs
from tests.conftest import csrf_token_from
from tests.runas import require_run_as_user
from tests.test_api_runs import issue_token
from tests.test_web_pages import started_run_id, wait_done

CONTENT = b"uploaded by a user\n"
CATALOGUE = textwrap.dedent(
    """
    commands:
      - name: show-upload
        title: Who am I, and the upload
        kind: shell
        argv: ["sh", "-c", "id -u; cat \\"$1\\"", "show-upload", "{inputfile}", "{args}"]
        params:
          inputfile: {type: file}
          args: {type: list, pattern: "[a-z]*"}
    """
)


@pytest.fixture
def app(make_app, tmp_path: Path):
    """The app ``users`` and ``login`` use: commands run as the unprivileged account."""
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=path, RUN_AS_USER=require_run_as_user())


@pytest.fixture
def uid() -> int:
    return pwd.getpwnam(require_run_as_user()).pw_uid


def test_a_shell2http_upload_is_readable_by_the_command_under_run_as_user(app, users, uid):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {issue_token(app, 'admin')[1]}"}
    data = {"inputfile": (io.BytesIO(CONTENT), "notes.txt"), "request_json": json.dumps({"args": ["@inputfile"]})}
    started = client.post("/shell2http/show-upload", data=data, content_type="multipart/form-data", headers=headers)
    assert started.status_code == 202, started.get_json()
    path = started.get_json()["result_url"].replace("http://localhost", "").replace("wait=false", "wait=true")
    report = client.get(path, headers=headers).get_json()
    assert report["error"] is None, report  # was: "cat: ...: Permission denied"
    assert report["returncode"] == 0 and report["report"] == f"{uid}\n{CONTENT.decode()}"


def test_a_web_form_upload_is_readable_by_the_command_under_run_as_user(app, login, uid):
    client = login("admin")
    token = csrf_token_from(client.get("/commands/show-upload").get_data(as_text=True))
    data = {"csrf_token": token, "inputfile": (io.BytesIO(CONTENT), "notes.txt")}
    run_id = started_run_id(client.post("/commands/show-upload", data=data, content_type="multipart/form-data"))
    assert wait_done(app, run_id) == "succeeded"
    with app.app_context():
        assert runs.output_text(run_id) == f"{uid}\n{CONTENT.decode()}"
