"""``manage.py demo`` (idempotent demo set-up) and ``manage.py serve`` (development server)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from gateway.cli.common import operator_actor
from gateway.db import migrate
from gateway.identity import accounts, groups
from gateway.identity.passwords import generate_password, verify_password
from gateway.platform.appctx import app_object

DEMO_USERS = (("admin", True), ("staff", False))
CREDENTIALS_FILE = "demo-credentials.txt"


def _read_credentials(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split(":", 1) for line in path.read_text(encoding="utf-8").splitlines() if ":" in line)
    return {name.strip(): password.strip() for name, password in pairs}


def _write_credentials(path: Path, credentials: dict[str, str]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for name, password in credentials.items():
            handle.write(f"{name}: {password}\n")
    os.chmod(path, 0o600)


def ensure_demo_users(credentials_path: Path) -> dict[str, str]:
    """Create the demo accounts once; keep their passwords in a private file, reused on every run."""
    known = _read_credentials(credentials_path)
    actor = operator_actor()
    credentials: dict[str, str] = {}
    for name, is_admin in DEMO_USERS:
        user = accounts.find_user(name)
        password = known.get(name)
        if user is None:
            password = password or generate_password()
            accounts.create_user(name, password, is_admin=is_admin, actor=actor)
        elif password is None or not verify_password(user.password_hash, password):
            # The file was lost or the password changed since: issue a new one rather than print a wrong one.
            password = generate_password()
            accounts.set_password(user, password, actor=actor)
        credentials[name] = password
    _write_credentials(credentials_path, credentials)
    return credentials


DEMO_DATASOURCE_FILE = "demo-ops.db"
DEMO_GROUP = "staff"
# What the demo staff group may run; admins may run everything.
DEMO_GRANTS = (
    "uptime", "disk-usage", "log-tail", "echo", "slow-count", "task-status", "task-list", "task-detail",
    "tasks-in-statuses",
)  # fmt: skip
DEMO_TASKS = [
    ("nightly-backup", "Success"),
    ("rotate-logs", "Success"),
    ("sync-inventory", "Pending"),
    ("renew-certificates", "Failed"),
    ("reindex-search", "Success"),
    ("purge-cache", "Pending"),
    ("export-billing", "Failed"),
    ("vacuum-database", "Success"),
]


def ensure_demo_datasource(path: Path) -> None:
    """The demo data source behind the task reports (a separate SQLite file, opened read-only)."""
    import sqlite3

    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
            "task_status TEXT NOT NULL, updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')))"
        )
        connection.executemany("INSERT OR IGNORE INTO tasks (name, task_status) VALUES (?, ?)", DEMO_TASKS)
    os.chmod(path, 0o644)  # data, not secrets: the read-only runner opens it


def ensure_demo_grants() -> None:
    from gateway.catalogue.switches import current_catalogue

    actor = operator_actor()
    if groups.find_group(DEMO_GROUP) is None:
        groups.create_group(DEMO_GROUP, description="Demo staff: status reports", actor=actor)
    groups.add_member(DEMO_GROUP, "staff", actor=actor)
    known = current_catalogue().commands
    for command in DEMO_GRANTS:
        if command in known:
            groups.add_grant(DEMO_GROUP, command, actor=actor)


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Create the database, demo data source, users, group and grants (idempotent); print the credentials."""
    migrate.upgrade("head")
    instance = Path(current_app.instance_path)
    path = instance / CREDENTIALS_FILE
    credentials = ensure_demo_users(path)
    datasource = instance / DEMO_DATASOURCE_FILE
    ensure_demo_datasource(datasource)
    ensure_demo_grants()
    click.echo(f"demo ready; credentials kept in {path} (mode 0600):")
    for name, password in credentials.items():
        click.echo(f"  {name}: {password}")
    click.echo(f"demo data source: OPS_DB_URL=sqlite:///{datasource}")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@with_appcontext
def serve_command(host: str, port: int) -> None:
    """Run the development server (threaded). Use gunicorn with wsgi.py in production."""
    from gateway.platform.lifecycle import serve_forever

    app = app_object()
    listening = served_base_url(host, port)
    if app.config["PUBLIC_BASE_URL_DEFAULTED"]:
        app.config["PUBLIC_BASE_URL"] = listening  # links (invites, API urls) point where this server answers
    click.echo(f"Ops Gateway on {listening}/ ({app.config['GATEWAY_ENV']})", err=True)
    if app.config["PUBLIC_BASE_URL"] != listening:
        click.echo(f"links use PUBLIC_BASE_URL={app.config['PUBLIC_BASE_URL']}", err=True)
    serve_forever(app, host, port)


def served_base_url(host: str, port: int) -> str:
    """The address a browser on this machine reaches ``serve`` at (a wildcard host is reached via loopback)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"  # a host name
    if address.is_unspecified:
        address = ipaddress.ip_address("127.0.0.1")
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"
