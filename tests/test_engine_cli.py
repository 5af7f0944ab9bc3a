"""The engine's operator verbs: groups, grants, commands (kill switch, validate, reload), runs, demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from config import PROJECT_ROOT
from gateway.db.models import AuditEvent, CommandState, Run
from gateway.platform.extensions import db
from tests import manage_process
from tests.conftest import base_environ

CATALOGUE = """
commands:
  - name: hello
    title: Hello
    kind: shell
    argv: ["echo", "hello"]
  - name: nap
    title: Nap
    kind: shell
    argv: ["sleep", "30"]
"""


@pytest.fixture
def cli(database_url, tmp_path):
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(CATALOGUE)
    environ = {
        **base_environ(database_url),
        "PATH": os.environ["PATH"],
        "GATEWAY_COMMANDS_FILE": str(catalogue),
        "GATEWAY_INSTANCE_PATH": str(tmp_path / "instance"),
    }

    def run(*args: str, stdin: str | None = None, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return manage_process.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT_ROOT,
            env={**environ, **(extra or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    run.environ = environ  # type: ignore[attr-defined]
    run.catalogue = catalogue  # type: ignore[attr-defined]
    return run


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def audit_events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)))


@pytest.mark.slow
def test_groups_and_grants(cli, make_app, users):
    ok(cli("groups", "create", "Ops"))
    assert "already exists" in cli("groups", "create", "ops").stderr
    ok(cli("groups", "add-member", "ops", "staff"))
    ok(cli("grants", "add", "ops", "hello"))
    refused = cli("grants", "add", "ops", "no-such-command")
    assert refused.returncode != 0 and "command:" in refused.stderr
    assert ok(cli("groups", "list")).stdout.splitlines() == ["ops\tstaff\t[]"]
    assert ok(cli("grants", "list")).stdout.splitlines() == ["ops\thello"]

    # A grant whose command left the catalogue is shown as stale, not crashed on.
    cli.catalogue.write_text(CATALOGUE.replace("name: hello", "name: hello-renamed"))
    assert "stale" in ok(cli("grants", "list")).stdout

    ok(cli("grants", "remove", "ops", "hello"))
    ok(cli("groups", "remove-member", "ops", "staff"))
    app = make_app(GATEWAY_COMMANDS_FILE=cli.catalogue)
    kinds = [event.event for event in audit_events(app, "admin.grant_added") + audit_events(app, "admin.grant_removed")]
    assert kinds == ["admin.grant_added", "admin.grant_removed"]
    assert [e.detail["user"] for e in audit_events(app, "admin.group_member_removed")] == ["staff"]


@pytest.mark.slow
def test_commands_list_disable_enable_validate(cli, make_app):
    listed = ok(cli("commands", "list")).stdout.splitlines()
    assert listed == ["hello\tshell\tGeneral\tenabled", "nap\tshell\tGeneral\tenabled"]
    ok(cli("commands", "disable", "hello", "--reason", "maintenance"))
    assert "hello\tshell\tGeneral\tdisabled" in ok(cli("commands", "list")).stdout
    app = make_app(GATEWAY_COMMANDS_FILE=cli.catalogue)
    with app.app_context():
        assert db.session.get(CommandState, "hello").disabled
    ok(cli("commands", "enable", "hello"))
    events = audit_events(app, "admin.command_disabled") + audit_events(app, "admin.command_enabled")
    assert [(e.event, e.command) for e in events] == [
        ("admin.command_disabled", "hello"),
        ("admin.command_enabled", "hello"),
    ]
    assert cli("commands", "disable", "ghost").returncode != 0

    assert "2 commands" in ok(cli("commands", "validate")).stdout
    broken = Path(cli.catalogue).with_name("broken.yaml")
    broken.write_text("commands:\n  - name: bad\n    title: Bad\n    kind: shell\n    argv: ['echo', '{missing}']\n")
    result = cli("commands", "validate", str(broken))
    assert result.returncode != 0 and "'bad'" in result.stderr and "missing" in result.stderr


def test_an_invalid_catalogue_refuses_to_start_naming_command_and_field(cli):
    cli.catalogue.write_text("commands:\n  - name: oops\n    title: Oops\n    kind: query\n")
    result = cli("users", "list")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "GATEWAY_COMMANDS_FILE" in result.stderr and "'oops'" in result.stderr


@pytest.mark.slow
def test_runs_list_cancel_reap_prune(cli, make_app, users):
    from gateway import runs
    from gateway.db.models import User

    app = make_app(GATEWAY_COMMANDS_FILE=cli.catalogue)
    with app.app_context():
        admin = db.session.get(User, users["admin"].id)
        caller = runs.Caller(user=admin, source_ip="127.0.0.1")
        done = runs.start("hello", {}, caller).run.id
        napping = runs.start("nap", {}, caller).run.id
    listed = ok(cli("runs", "list")).stdout
    assert done in listed and napping in listed

    ok(cli("runs", "cancel", napping))  # from another process: the owning executor sees it at its next beat
    with app.app_context():
        app.extensions["gateway.executor"].beat_once()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            db.session.rollback()
            if db.session.get(Run, napping).status == "cancelled":
                break
            time.sleep(0.05)
        assert db.session.get(Run, napping).status == "cancelled"
    assert "0 run(s) marked lost" in ok(cli("runs", "reap")).stderr

    with app.app_context():
        from datetime import timedelta

        from gateway.platform.timeutil import utcnow

        db.session.execute(db.update(Run).values(created_at=utcnow() - timedelta(days=40)))
        db.session.commit()
    assert "2 run(s) pruned" in ok(cli("runs", "prune", "--older-than-days", "30")).stderr
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Run)) == 0
    assert [e.detail["deleted"] for e in audit_events(app, "runs.pruned")] == [2]
    assert ok(cli("audit", "verify")).returncode == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_reload_reaches_the_running_server(cli, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=cli.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        pidfile = tmp_path / "instance" / "gateway.pid"
        assert int(pidfile.read_text()) == server.pid

        # A broken edit is refused by reload, before the server is bothered.
        cli.catalogue.write_text("commands: [{name: x}]\n")
        assert cli("commands", "reload").returncode != 0
        cli.catalogue.write_text(CATALOGUE + '  - name: added\n    title: Added\n    kind: shell\n    argv: ["true"]\n')
        assert "sent SIGHUP" in ok(cli("commands", "reload")).stderr
        deadline = time.monotonic() + 10
        reloaded = False
        while time.monotonic() < deadline and not reloaded:
            time.sleep(0.2)
            reloaded = "catalogue reloaded: 3 commands" in _drain(server)
        assert reloaded
        assert server.poll() is None
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


_seen: dict[int, str] = {}


def _drain(server: subprocess.Popen) -> str:
    """What the server has logged so far (non-blocking)."""
    import fcntl

    fd = server.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        chunk = os.read(fd, 65536).decode(errors="replace")
    except BlockingIOError:
        chunk = ""
    _seen[server.pid] = _seen.get(server.pid, "") + chunk
    return _seen[server.pid]


@pytest.mark.slow
def test_demo_sets_up_groups_grants_and_the_data_source(cli, tmp_path):
    environ = {"GATEWAY_ENV": "development", "GATEWAY_COMMANDS_FILE": str(PROJECT_ROOT / "commands.yaml")}
    first = ok(cli("demo", extra=environ))
    second = ok(cli("demo", extra=environ))
    assert first.stdout == second.stdout
    assert "OPS_DB_URL=sqlite:///" in first.stdout
    grants = ok(cli("grants", "list", extra=environ)).stdout.splitlines()
    assert "staff\ttask-status" in grants and "staff\tuptime" in grants
    assert "staff\tprocess-list" not in grants  # admins only
    assert ok(cli("groups", "list", extra=environ)).stdout.splitlines() == ["staff\tstaff\t[]"]
    ops_db = tmp_path / "instance" / "demo-ops.db"
    import sqlite3

    with sqlite3.connect(ops_db) as connection:
        statuses = {row[0] for row in connection.execute("SELECT DISTINCT task_status FROM tasks")}
    assert statuses == {"Success", "Pending", "Failed"}
