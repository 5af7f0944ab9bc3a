"""``manage.py audit verify [--anchor LINE] | anchor``.

Exit codes of ``verify``: 0 intact, 1 broken (first bad seq printed), 2 could not check.
``anchor`` exits 2 as well when it cannot read the ledger, so scripts never keep
a traceback as an anchor.
"""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from gateway import audit
from gateway.extensions import db

EXIT_INTACT, EXIT_BROKEN, EXIT_UNCHECKED = 0, 1, 2


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit ledger."""


@audit_group.command("verify")
@click.option("--anchor", "anchor_line", help="A line printed by 'audit anchor' (or logged by the app).")
@click.option("--from-seq", type=int, default=None, help="Start checking at this seq.")
@with_appcontext
def verify(anchor_line: str | None, from_seq: int | None) -> None:
    """Recompute the chain and name the first bad seq."""
    keyring = audit.Keyring.from_config(current_app.config)
    try:
        anchor = audit.parse_anchor(anchor_line, keyring) if anchor_line else None
        result = audit.verify(db.session, keyring, from_seq=from_seq, anchor=anchor)
    except audit.AnchorError as exc:
        click.echo(f"could not check: {exc}", err=True)
        sys.exit(EXIT_UNCHECKED)
    except SQLAlchemyError as exc:
        click.echo(f"could not check: database error ({type(exc).__name__})", err=True)
        sys.exit(EXIT_UNCHECKED)
    click.echo(json.dumps(result.as_dict(), sort_keys=True))
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} rows checked", err=True)
        sys.exit(EXIT_INTACT)
    click.echo(f"audit chain broken at seq {result.first_bad_seq}: {result.reason}", err=True)
    sys.exit(EXIT_BROKEN)


@audit_group.command("anchor")
@with_appcontext
def anchor() -> None:
    """Print the signed chain head as one JSON line, to keep outside the database."""
    keyring = audit.Keyring.from_config(current_app.config)
    try:
        signed = audit.current_anchor(db.session, keyring)
    except SQLAlchemyError as exc:
        click.echo(f"could not read the ledger: database error ({type(exc).__name__})", err=True)
        sys.exit(EXIT_UNCHECKED)
    click.echo(json.dumps(signed, sort_keys=True))
