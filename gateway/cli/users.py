"""``manage.py users ...``: create, set-password, disable, enable, unlock, set-admin, reset-mfa, list."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from gateway.cli.common import fail, operator_actor, read_password
from gateway.identity import accounts
from gateway.identity.mfa import factors
from gateway.identity.passwords import generate_password


@click.group("users")
def users_group() -> None:
    """Local user accounts."""


@users_group.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")
@with_appcontext
def create(name: str, admin: bool, password_stdin: bool) -> None:
    """Create a user. Without --password-stdin a password is generated and printed once."""
    generated = not password_stdin
    password = generate_password() if generated else read_password(True)
    try:
        user = accounts.create_user(name, password, is_admin=admin, actor=operator_actor())
    except accounts.AccountError as exc:
        fail(str(exc))
    click.echo(f"created {'admin' if admin else 'user'} {user.username}", err=True)
    if generated:
        click.echo(password)


@users_group.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")
@with_appcontext
def set_password(name: str, password_stdin: bool) -> None:
    """Set a new password (prompted, or from stdin); the user's sessions and API tokens end."""
    try:
        user = accounts.get_user(name)
        revoked = accounts.set_password(user, read_password(password_stdin), actor=operator_actor())
    except accounts.AccountError as exc:
        fail(str(exc))
    click.echo(
        f"password changed for {user.username}; {revoked.sessions} session(s) ended, "
        f"{revoked.tokens} API token(s) revoked",
        err=True,
    )


def _set_active(name: str, active: bool) -> None:
    try:
        accounts.set_active(accounts.get_user(name), active, actor=operator_actor())
    except accounts.AccountError as exc:
        fail(str(exc))
    click.echo(f"{'enabled' if active else 'disabled'} {name}", err=True)


@users_group.command("disable")
@click.argument("name")
@with_appcontext
def disable(name: str) -> None:
    """Disable a user and end their sessions and API tokens at once (enabling again restores neither)."""
    _set_active(name, False)


@users_group.command("enable")
@click.argument("name")
@with_appcontext
def enable(name: str) -> None:
    """Enable a disabled user."""
    _set_active(name, True)


@users_group.command("unlock")
@click.argument("name")
@with_appcontext
def unlock(name: str) -> None:
    """Clear a sign-in lock (works for any name, existing or not)."""
    had_lock = accounts.unlock(name, actor=operator_actor())
    click.echo(f"unlocked {name}" if had_lock else f"{name} had no failed sign-ins", err=True)


@users_group.command("set-admin")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
@with_appcontext
def set_admin(name: str, state: str) -> None:
    """Grant (on) or revoke (off) administrator rights."""
    try:
        accounts.set_admin(accounts.get_user(name), state == "on", actor=operator_actor())
    except accounts.AccountError as exc:
        fail(str(exc))
    click.echo(f"{name}: admin {state}", err=True)


@users_group.command("reset-mfa")
@click.argument("name")
@with_appcontext
def reset_mfa(name: str) -> None:
    """Remove a user's second factors (app, passkeys, recovery codes); their sessions and API tokens end."""
    try:
        done = factors.reset(accounts.get_user(name), actor=operator_actor())
    except accounts.AccountError as exc:
        fail(str(exc))
    click.echo(
        f"second factors of {name} removed ({', '.join(done.factors)}); {done.revoked.sessions} session(s) ended, "
        f"{done.revoked.tokens} API token(s) revoked",
        err=True,
    )


@users_group.command("list")
@with_appcontext
def list_users() -> None:
    """List users: name, role, state (``invited``: created through an invite link, no password yet), source.

    The source says how the account signs in: ``local`` (password), ``oidc`` or ``header``.
    """
    for user in accounts.list_users():
        role = "admin" if user.is_admin else "staff"
        invited = user.source == "local" and user.password_hash is None
        state = "disabled" if not user.active else "invited" if invited else "active"
        click.echo(f"{user.username}\t{role}\t{state}\t{user.source}")
