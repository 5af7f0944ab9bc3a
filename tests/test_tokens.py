"""``manage.py tokens create|list|revoke`` as an operator runs them (subprocesses), and the tokens they make."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import base_environ

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(database_url, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        environ = {**base_environ(database_url), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        environ["GATEWAY_INSTANCE_PATH"] = str(tmp_path / "cli-instance")
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=PROJECT, env=environ, input="",
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    return run


@pytest.fixture
def staff(app):
    from gateway import accounts

    with app.app_context():
        accounts.create_user("staff", "staff-password-123")
        accounts.create_user("admin", "admin-password-123", is_admin=True)


def get(app, token: str, path: str = "/api/v1/commands"):
    return app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.slow
def test_create_prints_the_token_alone_and_it_works_until_revoked(app, staff, cli):
    from gateway.extensions import db
    from gateway.models import ApiToken, AuditEvent

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
    from gateway.extensions import db
    from gateway.models import ApiToken

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
    from gateway import accounts, tokens
    from gateway.database import write_transaction
    from gateway.models import ApiToken
    from gateway.timeutil import utcnow

    with app.app_context():
        issued = tokens.create_token(accounts.get_user("staff"), expires_days=1)
        with write_transaction() as tx:
            tx.query(ApiToken).update({"expires_at": utcnow() - timedelta(seconds=1)})
    assert get(app, issued.secret).status_code == 401
