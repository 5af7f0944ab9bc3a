"""API tokens: ``manage.py tokens create|list|revoke`` as an operator runs them (subprocesses), the tokens
they make, and creating one in the browser (which asks for the current password; the CLI asks nothing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.identity import accounts, tokens
from gateway.identity.views import LOCKED_MESSAGE
from tests import manage_process
from tests.conftest import PASSWORDS, base_environ, csrf_token_from, login_response, seed_session

PROJECT = Path(__file__).resolve().parent.parent
NEW_TOKEN = re.compile(r'id="new-token" class="token" value="(gw_[^"]+)"')


@pytest.fixture
def cli(database_url, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        environ = {**base_environ(database_url), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        environ["GATEWAY_INSTANCE_PATH"] = str(tmp_path / "cli-instance")
        return manage_process.run(
            [sys.executable, "manage.py", *args], cwd=PROJECT, env=environ, input="",
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    return run


@pytest.fixture
def staff(app):

    with app.app_context():
        accounts.create_user("staff", "staff-password-123")
        accounts.create_user("admin", "admin-password-123", is_admin=True)


def get(app, token: str, path: str = "/api/v1/commands"):
    return app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.slow
def test_create_prints_the_token_alone_and_it_works_until_revoked(app, staff, cli):
    from gateway.db.models import ApiToken, AuditEvent
    from gateway.platform.extensions import db

    created = cli("tokens", "create", "staff", "--name", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and token.startswith("gw_")
    assert token not in created.stderr and "expires in 90 days" in created.stderr
    assert get(app, token).status_code == 200
    with app.app_context():
        row = db.session.query(ApiToken).one()
        assert row.name == "ci" and row.token_hash != token and token not in row.token_hash
        assert timedelta(days=89) < row.expires_at - row.created_at <= timedelta(days=90)
        token_id = row.id
        assert all(token not in str(e.detail) for e in db.session.query(AuditEvent))  # never in the ledger
    listed = cli("tokens", "list", "staff")
    assert listed.returncode == 0 and "ci" in listed.stdout and "active" in listed.stdout and token not in listed.stdout
    revoked = cli("tokens", "revoke", str(token_id))
    assert revoked.returncode == 0, revoked.stderr
    assert get(app, token).status_code == 401
    assert "revoked" in cli("tokens", "list").stdout
    assert cli("tokens", "revoke", str(token_id)).returncode == 1  # already revoked


@pytest.mark.slow
def test_expiry_options(app, staff, cli):
    from gateway.db.models import ApiToken
    from gateway.platform.extensions import db

    forever = cli("tokens", "create", "staff", "--no-expiry")
    assert forever.returncode == 0 and "never expires" in forever.stderr
    week = cli("tokens", "create", "staff", "--expires-days", "7")
    assert week.returncode == 0
    assert cli("tokens", "create", "staff", "--no-expiry", "--expires-days", "7").returncode != 0
    assert cli("tokens", "create", "staff", "--expires-days", "0").returncode != 0
    missing = cli("tokens", "create", "nobody")
    assert missing.returncode != 0 and missing.stdout == ""
    with app.app_context():
        rows = list(db.session.query(ApiToken).order_by(ApiToken.id))
        assert len(rows) == 2
        assert rows[0].expires_at is None  # --no-expiry, asked for explicitly
        assert timedelta(days=6) < rows[1].expires_at - rows[1].created_at <= timedelta(days=7)
    assert get(app, forever.stdout.strip()).status_code == 200 and get(app, week.stdout.strip()).status_code == 200


def test_expired_token_is_refused(app, staff):
    from gateway.db.models import ApiToken
    from gateway.db.units import write_transaction
    from gateway.platform.timeutil import utcnow

    with app.app_context():
        issued = tokens.create_token(accounts.get_user("staff"), expires_days=1)
        with write_transaction() as tx:
            tx.query(ApiToken).update({"expires_at": utcnow() - timedelta(seconds=1)})
    assert get(app, issued.secret).status_code == 401


# --- creating a token in the browser asks for the current password ------------------------------


def new_token_form(client, password: str | None, **fields: str):
    """The account page's new-token form as a browser submits it (``password=None``: field left out)."""
    data = {"csrf_token": csrf_token_from(client.get("/account").get_data(as_text=True)), "name": "ci", **fields}
    if password is not None:
        data["current_password"] = password
    return client.post("/account/tokens", data=data)


def ledger(app, *names: str):
    from gateway.db.models import AuditEvent
    from gateway.platform.extensions import db

    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event.in_(names)).order_by(AuditEvent.seq)))


def test_a_session_alone_cannot_mint_a_token(app, users, login):
    """A stolen cookie must not turn into a never-expiring bearer token: the form asks for the password."""

    client = login("staff")
    for typed, message in ((None, "Enter your current password."), ("", "Enter your current password."),
                           ("not-my-password-1", "This is not your current password.")):  # fmt: skip
        response = new_token_form(client, typed, expires="never")
        html = response.get_data(as_text=True)
        assert response.status_code == 400, typed
        assert 'id="token-current-password-error"' in html and message in html
    with app.app_context():
        assert tokens.tokens_of(accounts.get_user("staff")) == []
    failures = ledger(app, "auth.login_failed", "token.created")
    assert [(row.event, row.outcome, row.actor_name, row.detail) for row in failures] == [
        ("auth.login_failed", "invalid", "staff", {"method": "local", "via": "token_create"})
    ] * 3
    assert "not-my-password-1" not in repr([(row.params, row.detail) for row in failures])

    created = new_token_form(client, PASSWORDS["staff"])
    assert created.status_code == 303
    secret = NEW_TOKEN.search(client.get(created.headers["Location"]).get_data(as_text=True)).group(1)
    assert get(app, secret).status_code == 200
    assert [row.event for row in ledger(app, "token.created")] == ["token.created"]


def test_guessing_on_the_token_form_counts_toward_the_sign_in_lock(make_app, users):
    """Wrong passwords on the token form go through the sign-in check: the same lock, then 429."""
    app = make_app(LOGIN_MAX_ATTEMPTS=3, LOGIN_LOCK_SECONDS=60)
    client = app.test_client()
    seed_session(app, client, users["staff"].id)
    for _ in range(3):
        assert new_token_form(client, "a-wrong-guess-123").status_code == 400
    locked = new_token_form(client, PASSWORDS["staff"])  # right, but the name is locked: not even checked
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert LOCKED_MESSAGE in locked.get_data(as_text=True)
    assert login_response(app.test_client(), "staff", PASSWORDS["staff"]).status_code == 401  # sign-in locked too
    assert ledger(app, "token.created") == []
    assert [row.event for row in ledger(app, "auth.locked")] == ["auth.locked"]


def test_manage_py_tokens_create_asks_nothing(app, staff):
    """The operator's CLI needs no password: whoever runs manage.py already holds the database and keys."""
    from gateway.cli.tokens import tokens_group

    result = app.test_cli_runner().invoke(tokens_group, ["create", "staff", "--name", "ci"], input="")
    assert result.exit_code == 0, result.output
    assert get(app, result.stdout.strip().splitlines()[-1]).status_code == 200
