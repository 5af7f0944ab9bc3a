"""The operator CLI, run for real: ``python manage.py users ...`` and ``python manage.py demo``.

Passwords go in through stdin (never argv), every change leaves an audit event naming the
OS account that ran the command, and no password ever reaches the ledger.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway import audit, create_app
from gateway.db.models import AuditEvent, User
from gateway.platform.extensions import db
from tests import manage_process
from tests.conftest import base_environ, login_response

PROJECT = Path(__file__).resolve().parent.parent
OPERATOR = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
NEW_PASSWORD = "fresh-password-456"


def run_manage(environ: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**environ, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return manage_process.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=environ,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def cli(database_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli("users", "list", stdin=...)`` runs manage.py against this test's database."""

    def run(*args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return run_manage(base_environ(database_url, **extra_env), *args, stdin=stdin)

    return run


def signs_in(client: FlaskClient, username: str, password: str) -> bool:
    response = login_response(client, username, password)
    return response.status_code == 302


def admin_events(app: Flask, after_seq: int = 0) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.seq > after_seq, AuditEvent.event.in_(["admin.user_created", "admin.user_updated"]))
            .order_by(AuditEvent.seq)
        ).all()
        db.session.expunge_all()
        return list(rows)


def last_seq(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0


def row_text(event: AuditEvent) -> str:
    columns = ("event", "actor_name", "source_ip", "user_agent", "command", "params", "outcome", "detail")
    return json.dumps({name: getattr(event, name) for name in columns}, default=str)


def assert_chain_intact(app: Flask) -> None:
    with app.app_context():
        result = audit.verify(db.session, audit.Keyring.from_config(app.config))
        assert result.ok, result.as_dict()


def user_row(app: Flask, name: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == name))
        db.session.expunge_all()
        return user


# --- users create -----------------------------------------------------------------------


def test_create_with_password_from_stdin_then_sign_in(cli, app, client):
    password = "alice-password-123"
    result = cli("users", "create", "Alice", "--password-stdin", stdin=password + "\n", USER="mallory")
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    assert "alice" in result.stderr

    assert signs_in(client, "alice", password)

    (event,) = admin_events(app)
    assert event.event == "admin.user_created"
    # The actor is the account the process runs as, not whatever $USER claims.
    assert (event.actor_id, event.actor_name) == (None, OPERATOR)
    assert event.detail["after"] == {"username": "alice", "is_admin": False, "active": True}
    assert password not in row_text(event)
    assert_chain_intact(app)


def test_create_without_stdin_prints_a_generated_password_alone(cli, app, client):
    result = cli("users", "create", "bob", "--admin")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    password = lines[0]
    assert len(password) >= 12 and password.strip() == password
    assert password not in result.stderr

    assert signs_in(client, "bob", password)
    assert user_row(app, "bob").is_admin
    (event,) = admin_events(app)
    assert event.detail["after"]["is_admin"] is True
    assert password not in row_text(event)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_invalid_input_is_refused_naming_the_field(cli, app, users):
    before = last_seq(app)
    cases = [
        (("users", "create", "bad name!", "--password-stdin"), "long-enough-password\n", "username"),
        (("users", "create", "carol", "--password-stdin"), "short\n", "password"),
        (("users", "create", "carol", "--password-stdin"), "", "password"),
        (("users", "create", "ADMIN", "--password-stdin"), "long-enough-password\n", "username"),
        (("users", "set-password", "nobody", "--password-stdin"), "long-enough-password\n", "username"),
        (("users", "set-admin", "nobody", "on"), None, "username"),
    ]
    for args, stdin, field in cases:
        result = cli(*args, stdin=stdin)
        assert result.returncode != 0, args
        assert result.stderr.startswith(f"error: {field}:"), (args, result.stderr)
        assert "Traceback" not in result.stderr
        if stdin:
            assert stdin.strip() not in result.stderr
    assert user_row(app, "carol") is None
    assert "already exists" in cli("users", "create", "admin", "--password-stdin", stdin="x" * 20).stderr
    assert admin_events(app, before) == []


# --- changes to existing users ------------------------------------------------------------


def test_set_password_from_stdin_ends_sessions(cli, app, client, users):
    assert signs_in(client, "staff", users["staff"].password)
    assert client.get("/").status_code == 200
    before = last_seq(app)

    result = cli("users", "set-password", "staff", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert NEW_PASSWORD not in result.stdout + result.stderr

    assert client.get("/").status_code == 302  # the open session ended
    fresh = app.test_client()
    assert not signs_in(fresh, "staff", users["staff"].password)
    assert signs_in(fresh, "staff", NEW_PASSWORD)

    (event,) = admin_events(app, before)
    assert event.event == "admin.user_updated"
    assert event.actor_name == OPERATOR
    assert event.detail["changed"] == ["password"]
    assert NEW_PASSWORD not in row_text(event)
    assert users["staff"].password not in row_text(event)


@pytest.mark.slow
def test_disable_and_enable(cli, app, client, users):
    assert signs_in(client, "staff", users["staff"].password)
    before = last_seq(app)

    result = cli("users", "disable", "staff")
    assert result.returncode == 0, result.stderr
    assert client.get("/").status_code == 302  # signed out at once
    assert not signs_in(app.test_client(), "staff", users["staff"].password)

    result = cli("users", "enable", "staff")
    assert result.returncode == 0, result.stderr
    assert signs_in(app.test_client(), "staff", users["staff"].password)

    disabled, enabled = admin_events(app, before)
    assert disabled.detail["before"]["active"] is True and disabled.detail["after"]["active"] is False
    assert enabled.detail["after"]["active"] is True
    assert {disabled.actor_name, enabled.actor_name} == {OPERATOR}


def test_unlock_clears_a_sign_in_lock(cli, make_app, users):
    app = make_app(LOGIN_MAX_ATTEMPTS="2")
    client = app.test_client()
    for _ in range(2):
        assert not signs_in(client, "staff", "wrong-password-000")
    assert not signs_in(client, "staff", users["staff"].password)  # locked: even the right password fails
    before = last_seq(app)

    result = cli("users", "unlock", "Staff")
    assert result.returncode == 0, result.stderr
    assert signs_in(app.test_client(), "staff", users["staff"].password)

    (event,) = admin_events(app, before)
    assert event.actor_name == OPERATOR
    assert event.detail["user"] == "staff" and event.detail["had_lock"] is True


@pytest.mark.slow
def test_set_admin_keeps_the_last_active_admin(cli, app, users):
    before = last_seq(app)
    result = cli("users", "set-admin", "admin", "off")
    assert result.returncode != 0
    assert "last active admin" in result.stderr
    result = cli("users", "disable", "admin")
    assert result.returncode != 0
    assert "last active admin" in result.stderr
    assert user_row(app, "admin").is_admin and user_row(app, "admin").active
    assert admin_events(app, before) == []

    assert cli("users", "set-admin", "staff", "on").returncode == 0
    assert cli("users", "set-admin", "admin", "off").returncode == 0
    assert not user_row(app, "admin").is_admin
    assert user_row(app, "staff").is_admin

    granted, revoked = admin_events(app, before)
    assert granted.detail == {
        "before": {"username": "staff", "is_admin": False, "active": True},
        "after": {"username": "staff", "is_admin": True, "active": True},
    }
    assert revoked.detail["after"] == {"username": "admin", "is_admin": False, "active": True}
    assert {granted.actor_name, revoked.actor_name} == {OPERATOR}

    result = cli("users", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "admin\tstaff\tactive\tlocal",
        "other\tstaff\tactive\tlocal",
        "staff\tadmin\tactive\tlocal",
    ]
    assert_chain_intact(app)


# --- demo -----------------------------------------------------------------------------------


def parse_credentials(stdout: str) -> dict[str, str]:
    pairs = (line.strip().split(": ", 1) for line in stdout.splitlines() if line.startswith("  "))
    return dict(pairs)


@pytest.mark.slow
def test_demo_is_idempotent_and_its_credentials_sign_in(tmp_path: Path):
    instance = tmp_path / "instance"
    environ = {"GATEWAY_ENV": "development", "GATEWAY_INSTANCE_PATH": str(instance)}

    first = run_manage(environ, "demo")
    assert first.returncode == 0, first.stderr
    second = run_manage(environ, "demo")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    credentials = parse_credentials(first.stdout)
    assert set(credentials) == {"admin", "staff"}

    path = instance / "demo-credentials.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in first.stdout
    assert (instance / "gateway.db").exists()

    app = create_app({"GATEWAY_ENV": "development"}, instance_path=instance)
    try:
        assert user_row(app, "admin").is_admin
        assert not user_row(app, "staff").is_admin
        for name, password in credentials.items():
            assert signs_in(app.test_client(), name, password), name

        # Someone changed a demo password since: the next run prints one that works, not the stale one.
        changed = run_manage(environ, "users", "set-password", "staff", "--password-stdin", stdin=NEW_PASSWORD)
        assert changed.returncode == 0, changed.stderr
        third = run_manage(environ, "demo")
        assert third.returncode == 0, third.stderr
        renewed = parse_credentials(third.stdout)
        assert renewed["admin"] == credentials["admin"]
        assert renewed["staff"] not in (credentials["staff"], NEW_PASSWORD)
        assert signs_in(app.test_client(), "staff", renewed["staff"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert_chain_intact(app)
    finally:
        with app.app_context():
            db.engine.dispose()


# --- help and validation need no secrets ------------------------------------------------


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_help_and_catalogue_validation_need_no_secrets(tmp_path: Path) -> None:
    """An operator reads the help and checks a catalogue before any secret exists (a CI job, a new host)."""
    bare = {"GATEWAY_ENV": "production"}  # no SECRET_KEY, no AUDIT_KEY, no database
    top = run_manage(bare, "--help")
    assert top.returncode == 0, top.stderr
    for group in ("users", "tokens", "commands", "runs", "audit", "db", "serve"):
        assert f"  {group} " in top.stdout, top.stdout
    group_help = run_manage(bare, "users", "--help")
    assert group_help.returncode == 0 and "set-password" in group_help.stdout, group_help.stderr
    assert run_manage(bare, "commands", "validate", "--help").returncode == 0

    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(
        'commands:\n  - {name: hello, title: Hello, kind: shell, argv: ["echo", "hi"]}\n'
        'schedules:\n  - {name: hourly-hello, command: hello, cron: "0 * * * *"}\n'
    )
    valid = run_manage(bare, "commands", "validate", str(catalogue))
    assert valid.returncode == 0, valid.stderr
    assert f"{catalogue}: 1 commands, 0 data sources, 1 schedules: valid" in valid.stdout
    catalogue.write_text("commands:\n  - {name: hello, kind: shell}\n")
    invalid = run_manage(bare, "commands", "validate", str(catalogue))
    assert invalid.returncode == 1 and "hello" in invalid.stderr, invalid.stderr

    unknown = run_manage(bare, "no-such-verb")
    assert unknown.returncode == 2 and "No such command" in unknown.stderr, unknown.stderr
    for result in (top, group_help, valid, invalid, unknown):
        assert "SECRET_KEY" not in result.stderr and "Traceback" not in result.stderr

    needs_app = run_manage(bare, "users", "list")  # what does need the app still refuses, in one line
    assert needs_app.returncode == 2 and needs_app.stderr.strip().splitlines() == [
        "refusing to start: SECRET_KEY: not set (set SECRET_KEY or SECRET_KEY_FILE)"
    ]
