"""``manage.py demo`` (idempotent demo set-up) and ``manage.py serve`` (development server)."""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from gateway import accounts, migrate
from gateway.auth.passwords import generate_password
from gateway.cli.common import operator_actor

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
        elif password is None:
            # The file was lost: issue a new password rather than print a wrong one.
            password = generate_password()
            accounts.set_password(user, password, actor=actor)
        credentials[name] = password
    _write_credentials(credentials_path, credentials)
    return credentials


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Create the database and the demo users (idempotent); print their credentials."""
    migrate.upgrade("head")
    path = Path(current_app.instance_path) / CREDENTIALS_FILE
    credentials = ensure_demo_users(path)
    click.echo(f"demo ready; credentials kept in {path} (mode 0600):")
    for name, password in credentials.items():
        click.echo(f"  {name}: {password}")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@with_appcontext
def serve_command(host: str, port: int) -> None:
    """Run the development server (threaded). Use gunicorn with wsgi.py in production."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    click.echo(f"Ops Gateway on http://{host}:{port}/ ({app.config['GATEWAY_ENV']})", err=True)
    app.run(host=host, port=port, threaded=True, use_reloader=False, debug=False)
