"""``manage.py audit verify [--anchor LINE] [--record] | anchor | export | prune --older-than-days N [--force]``,
and the forwarding cursors: ``audit forward-status | forward-reset NAME --from-seq N | --forget``.

Exit codes of ``verify``: 0 intact, 1 broken (first bad seq printed), 2 could not check.
``anchor`` exits 2 as well when it cannot read the ledger, so scripts never keep
a traceback as an anchor.  ``verify --record`` (the scheduled CronJob) also
appends the result as an ``audit.verified`` event, which every replica's
``/metrics`` reports as ``gateway_audit_chain_ok``; if that record cannot be
written, an intact chain exits 2, so the Job still fails.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from gateway import audit
from gateway.audit import exports, forwarding, queries, status
from gateway.cli.common import operator_actor
from gateway.platform.extensions import db
from gateway.platform.timeutil import rfc3339, utcnow

EXIT_INTACT, EXIT_BROKEN, EXIT_UNCHECKED = 0, 1, 2


@contextmanager
def database_errors(doing: str) -> Iterator[None]:
    """A database that cannot answer ends the command with one line and exit 2, never a traceback."""
    try:
        yield
    except SQLAlchemyError as exc:
        click.echo(f"could not {doing}: database error ({type(exc).__name__})", err=True)
        sys.exit(EXIT_UNCHECKED)


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit ledger."""


@audit_group.command("verify")
@click.option("--anchor", "anchor_line", help="A line printed by 'audit anchor' (or logged by the app).")
@click.option("--from-seq", type=int, default=None, help="Start checking at this seq.")
@click.option("--record", is_flag=True, help="Append the result as an audit.verified event (for /metrics).")
@with_appcontext
def verify(anchor_line: str | None, from_seq: int | None, record: bool) -> None:
    """Recompute the chain and name the first bad seq."""
    keyring = audit.Keyring.from_config(current_app.config)
    try:
        anchor = audit.parse_anchor(anchor_line, keyring) if anchor_line else None
        result = audit.verify(db.session(), keyring, from_seq=from_seq, anchor=anchor)
    except audit.AnchorError as exc:
        click.echo(f"could not check: {exc}", err=True)
        sys.exit(EXIT_UNCHECKED)
    except SQLAlchemyError as exc:
        click.echo(f"could not check: database error ({type(exc).__name__})", err=True)
        sys.exit(EXIT_UNCHECKED)
    click.echo(json.dumps(result.as_dict(), sort_keys=True))
    if record:
        try:
            status.record(result, from_seq=from_seq, anchor=anchor, actor=operator_actor())
        except SQLAlchemyError as exc:
            click.echo(f"could not record the result: database error ({type(exc).__name__})", err=True)
            if result.ok:
                sys.exit(EXIT_UNCHECKED)
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
    with database_errors("read the ledger"):
        signed = audit.current_anchor(db.session(), keyring)
    click.echo(json.dumps(signed, sort_keys=True))


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(sorted(exports.FORMATS)), required=True, help="csv or jsonl")
@click.option("--since", default=None, help="Only events at or after this ISO 8601 time (UTC if no zone).")
@click.option("--until", default=None, help="Only events before this ISO 8601 time (UTC if no zone).")
@with_appcontext
def export(fmt: str, since: str | None, until: str | None) -> None:
    """Stream the ledger (oldest first) to stdout as CSV (formula-safe) or JSON Lines."""
    try:
        flt = queries.AuditFilter.from_args({"since": since or "", "until": until or ""})
    except queries.FilterError as exc:
        click.echo(f"error: --{exc.field} {exc.message}", err=True)
        sys.exit(EXIT_UNCHECKED)
    out = sys.stdout  # (click.get_text_stream is deprecated since Click 8.5)
    count = -1 if fmt == "csv" else 0  # the CSV header is not an event
    try:
        for line in exports.export_lines(fmt, flt):
            out.write(line)
            count += 1
    except SQLAlchemyError as exc:
        click.echo(f"could not read the ledger: database error ({type(exc).__name__})", err=True)
        sys.exit(EXIT_UNCHECKED)
    out.flush()
    click.echo(f"exported {max(count, 0)} events", err=True)


@audit_group.command("prune")
@click.option("--older-than-days", type=click.IntRange(min=1), required=True, help="Delete events older than this.")
@click.option("--force", is_flag=True, help="Cut even events a forwarding destination has not been sent (audited).")
@with_appcontext
def prune(older_than_days: int, force: bool) -> None:
    """Delete old events, recording the cut as audit.pruned so verification still passes.

    Refused (exit 1, recorded as audit.prune_refused) when a forwarding destination has
    not been sent every event the cut would delete, unless --force.
    """
    cutoff = utcnow() - timedelta(days=older_than_days)
    try:
        with database_errors("prune"):
            pruned = audit.prune(cutoff, force=force, actor=operator_actor())
    except audit.PruneRefused as refused:
        click.echo(f"refusing to prune: {refused}; wait for it to catch up, or pass --force", err=True)
        sys.exit(EXIT_BROKEN)
    if pruned is None:
        click.echo(f"nothing older than {older_than_days} day(s) to prune", err=True)
        return
    detail: dict[str, Any] = pruned.detail or {}  # audit.prune always records what it cut
    click.echo(json.dumps({"seq": pruned.seq, **detail}, sort_keys=True))
    click.echo(
        f"pruned {detail['deleted']} events; the chain now starts at seq {detail['first_kept_seq']}",
        err=True,
    )
    for behind in detail.get("forced_past", []):
        click.echo(f"forced: {behind['destination']} had been sent up to seq {behind['sent_to_seq']}", err=True)


def _when(value: datetime | None) -> str:
    return rfc3339(value) if value is not None else "-"


@audit_group.command("forward-status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per destination instead of a table.")
@with_appcontext
def forward_status(as_json: bool) -> None:
    """Each forwarding destination's cursor, its lag behind the ledger's head, and whether it is failing."""
    with database_errors("read the cursors"):
        found = forwarding.statuses(db.session())
    if as_json:
        for item in found:
            click.echo(json.dumps({
                "destination": item.name, "kind": item.kind, "state": item.state, "cursor": item.last_seq,
                "head": item.head_seq, "lag": item.lag, "forwarded_at": _when(item.forwarded_at),
                "failing_since": _when(item.failing_since), "last_error": item.last_error,
                "lease_holder": item.lease_holder, "lease_expires_at": _when(item.lease_expires_at),
            }, sort_keys=True))  # fmt: skip
        return
    if not found:
        click.echo("no forwarding destinations (AUDIT_FORWARD is empty and no cursor is stored)", err=True)
        return
    click.echo(f"{'destination':<20} {'kind':<7} {'cursor':>10} {'lag':>8}  {'last forwarded':<28} state")
    for item in found:
        cursor = "-" if item.last_seq is None else str(item.last_seq)
        lag = "-" if item.lag is None else str(item.lag)
        state = item.state + (f" since {_when(item.failing_since)}" if item.last_error else "")
        click.echo(
            f"{item.name:<20} {item.kind or '-':<7} {cursor:>10} {lag:>8}  {_when(item.forwarded_at):<28} {state}"
        )
    click.echo(f"ledger head: seq {found[0].head_seq}", err=True)


@audit_group.command("forward-reset")
@click.argument("name")
@click.option("--from-seq", type=int, default=None, help="Send the ledger again from this seq (head + 1: from now).")
@click.option("--forget", is_flag=True, help="Delete the cursor of a destination no longer in AUDIT_FORWARD.")
@with_appcontext
def forward_reset(name: str, from_seq: int | None, forget: bool) -> None:
    """Move a destination's cursor (audited as audit.forward_reset), or forget a retired one."""
    if (from_seq is None) == (not forget):
        click.echo("error: give --from-seq N or --forget", err=True)
        sys.exit(EXIT_UNCHECKED)
    name = name.strip().lower()
    try:
        with database_errors("move the cursor"):
            if from_seq is None:
                last = forwarding.forget(name, actor=operator_actor())
                click.echo(f"forgot {name} (it had been sent up to seq {last.seq})", err=True)
                return
            previous, now = forwarding.reset(name, from_seq, actor=operator_actor())
    except forwarding.ForwardRefused as refused:
        click.echo(f"error: {refused.field}: {refused.message}", err=True)
        sys.exit(EXIT_BROKEN)
    before = "none" if previous is None else str(previous.seq)
    click.echo(f"{name}: cursor {before} -> {now.seq}; the next event sent is seq {now.seq + 1}", err=True)
