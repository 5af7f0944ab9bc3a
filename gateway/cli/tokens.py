"""``manage.py tokens ...``: create (the token alone on stdout, once), list, revoke."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from gateway.cli.common import fail, operator_actor
from gateway.db.models import User
from gateway.identity import accounts, tokens
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc, utcnow


@click.group("tokens")
def tokens_group() -> None:
    """API bearer tokens."""


@tokens_group.command("create")
@click.argument("user")
@click.option("--name", default="", help="A label shown in token lists.")
@click.option(
    "--expires-days", type=int, default=None, help=f"Days until expiry (default {tokens.DEFAULT_EXPIRY_DAYS})."
)
@click.option("--no-expiry", is_flag=True, help="A token that never expires (explicit opt-in).")
@with_appcontext
def create(user: str, name: str, expires_days: int | None, no_expiry: bool) -> None:
    """Issue a token for USER; prints the token alone on stdout (shown once), everything else on stderr."""
    if no_expiry and expires_days is not None:
        fail("--expires-days and --no-expiry exclude each other")
    days = None if no_expiry else (expires_days if expires_days is not None else tokens.DEFAULT_EXPIRY_DAYS)
    try:
        owner = accounts.get_user(user)
        if not owner.active:
            fail(f"user {owner.username!r} is disabled")
        issued = tokens.create_token(owner, name=name, expires_days=days, actor=operator_actor())
    except (accounts.AccountError, tokens.TokenError) as exc:
        fail(str(exc))
    expiry = "never expires" if days is None else f"expires in {days} days"
    click.echo(f"created token {issued.token.id} ({issued.token.prefix}) for {owner.username}; {expiry}", err=True)
    click.echo("This is the only time the token is shown.", err=True)
    click.echo(issued.secret)


def _when(value: object) -> str:
    return "-" if value is None else str(value)[:19]


@tokens_group.command("list")
@click.argument("user", required=False)
@with_appcontext
def list_tokens(user: str | None) -> None:
    """List tokens (of USER, or everyone's): id, owner, name, prefix, created, expires, last used, state."""
    owner = None
    if user:
        try:
            owner = accounts.get_user(user)
        except accounts.AccountError as exc:
            fail(str(exc))
    names = {u.id: u.username for u in db.session.query(User).all()}
    now = utcnow()
    for token in tokens.tokens_of(owner):
        expired = token.expires_at is not None and as_utc(token.expires_at) <= now
        state = "revoked" if token.revoked_at else "expired" if expired else "active"
        click.echo(
            "\t".join(
                [
                    str(token.id),
                    names.get(token.user_id, "?"),
                    token.name or "-",
                    token.prefix,
                    _when(token.created_at),
                    _when(token.expires_at),
                    _when(token.last_used_at),
                    state,
                ]
            )
        )


@tokens_group.command("revoke")
@click.argument("token_id", type=int)
@with_appcontext
def revoke(token_id: int) -> None:
    """Revoke token ID; effective on the token's next request."""
    if not tokens.revoke(token_id, actor=operator_actor()):
        fail(f"no active token with id {token_id}")
    click.echo(f"revoked token {token_id}", err=True)
