"""The ledger's stored rows read as text, and their values encoded canonically, fast.

Chain verification and audit forwarding both read the whole ledger in ``seq``
order and need each row's canonical text, not ORM objects: the columns are
read as the database holds them (JSON as stored text, ``at`` as SQLite's
stored UTC text or formatted by PostgreSQL) and each value is encoded by the
ledger's ``CANONICAL_JSON`` or by the json module's C functions configured
from it.  A row costs a fraction of what an ORM object, the drivers' JSON and
datetime parsing and a whole-document encode would (issue 5: verification at
>= 50,000 events/s; ``bench/audit_verify.py``).

May import the ledger and the database models; nothing here writes.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from typing import Any

from sqlalchemy import String, Text, cast, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from gateway.audit.ledger import ACTOR_KEYS, CANONICAL_JSON, slot_template
from gateway.db import dialect
from gateway.db.models import AuditEvent

# PostgreSQL formats ``at`` itself, exactly as rfc3339() does (UTC, microseconds, "Z").
_PG_CANONICAL_AT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
NESTED_CACHE_MAX = 4096

# A row's document keys in the canonical text's (sorted) order: what the HMAC signs and what is forwarded.
CANONICAL_KEYS = (
    "actor", "at", "command", "detail", "event", "key_id", "outcome", "params", "prev_hash", "run_id", "seq",
    "source_ip", "user_agent",
)  # fmt: skip
_ACTOR_TEXT = slot_template(("id", "name"), ACTOR_KEYS)

# What CANONICAL_JSON writes for a str, and for any value.
encode_string = json.encoder.encode_basestring_ascii if CANONICAL_JSON.ensure_ascii else json.encoder.encode_basestring
encode_value = CANONICAL_JSON.encode


def _c_json() -> tuple[Any, Any]:
    """The json module's C scanner, and its C encoder configured as ``CANONICAL_JSON``.

    ``json.loads`` and ``CANONICAL_JSON.encode`` build or wrap these on every call; readers of
    the whole ledger call them twice per row. Without the C accelerator the public functions
    are used (same output, slower).
    """
    # The C accelerators are optional and untyped (not in typeshed): looked up, not imported.
    make_scanner: Any = getattr(json.scanner, "c_make_scanner", None)
    make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
    scanner = make_scanner(json.JSONDecoder()) if make_scanner else None
    encoder = None
    if make_encoder:
        # markers None: no circularity check (parsed JSON cannot be circular); the rest as JSONEncoder.iterencode.
        canonical = CANONICAL_JSON
        encoder = make_encoder(
            None, canonical.default, encode_string, canonical.indent, canonical.key_separator,
            canonical.item_separator, canonical.sort_keys, canonical.skipkeys, canonical.allow_nan,
        )  # fmt: skip
    return scanner, encoder


_SCAN_JSON, _ENCODE_JSON = _c_json()


def _parse_stored_json(text: str) -> Any:
    """``json.loads(text)``, through the C scanner when the text is one JSON value and nothing else."""
    if _SCAN_JSON is not None:
        try:
            value, end = _SCAN_JSON(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return value
    return json.loads(text)


def json_scalar(value: Any) -> str:
    """One column's value as canonical JSON: the common types directly, anything else through the encoder."""
    kind = type(value)
    if kind is str:
        return encode_string(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    return encode_value(value)


def actor_text(actor_id: Any, actor_name: Any) -> str:
    """The canonical text of a row's actor object (``null`` when the row has none)."""
    if actor_id is None and actor_name is None:
        return "null"
    return _ACTOR_TEXT % (json_scalar(actor_id), json_scalar(actor_name))


def json_nested(stored: Any, cache: dict[str, str]) -> str:
    """A JSON column's stored text, parsed as the driver would and re-encoded canonically (memoised by
    text: ``run.started`` and ``run.finished`` of a run carry the same params)."""
    if stored is None:
        return "null"
    if not isinstance(stored, str):  # SQLite's NUMERIC affinity keeps a bare number as a number
        return encode_value(stored)
    encoded = cache.get(stored)
    if encoded is None:
        value = _parse_stored_json(stored)
        if _ENCODE_JSON is not None and isinstance(value, (dict, list)):
            encoded = "".join(_ENCODE_JSON(value, 0))
        else:
            encoded = encode_value(value)
        if len(cache) >= NESTED_CACHE_MAX:
            cache.clear()
        cache[stored] = encoded
    return encoded


def stored_rows(session: Session, start_seq: int, *, batch: int, limit: int | None = None) -> Any:
    """The ledger from ``start_seq`` on (at most ``limit`` rows), oldest first, streamed ``batch`` rows at a time.

    One statement, one snapshot.  The table's columns in their declared order, as
    text where the database holds text: JSON columns as stored (parsed once, by the
    caller, not by the driver and again by SQLAlchemy), ``at`` as SQLite's stored UTC
    text (the caller checks it with ``ledger.sqlite_stored_at``) or formatted by
    PostgreSQL.  PostgreSQL streams through a server-side cursor, SQLite through its
    own cursor.
    """
    c = AuditEvent.__table__.c
    at: ColumnElement[Any]
    params: ColumnElement[Any]
    detail: ColumnElement[Any]
    if not dialect.stores_text(session):
        at = func.to_char(func.timezone("UTC", c.at), _PG_CANONICAL_AT)
        params, detail = cast(c.params, Text), cast(c.detail, Text)
    else:
        at = type_coerce(c.at, String)
        params, detail = type_coerce(c.params, String), type_coerce(c.detail, String)
    query = select(
        c.seq, at, c.event, c.actor_id, c.actor_name, c.source_ip, c.user_agent, c.command, c.run_id,
        params, c.outcome, detail, c.key_id, c.prev_hash, c.hash,
    ).where(c.seq >= start_seq).order_by(c.seq)  # fmt: skip
    if limit is not None:
        query = query.limit(limit)
    return session.execute(query, execution_options={"yield_per": batch})
