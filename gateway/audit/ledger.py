"""The ledger: the only code that writes ``audit_events``, and the definition of what each row's hash covers.

Each row is chained to the one before it: ``hash`` is an HMAC-SHA256, keyed by
the audit key named in ``key_id``, over ``prev_hash``, ``seq`` and the
canonical encoding of the row (JSON of every column but ``hash``, sorted keys,
UTF-8, no whitespace, ``at`` as RFC 3339 UTC with microseconds and ``Z``).
The message is ``prev_hash + "\\n" + str(seq) + "\\n" + canonical``.

``seq`` is assigned under the database write lock, never by autoincrement, so
concurrent writers in any number of threads, processes or replicas produce one
linear chain: SQLite transactions opened by ``write_transaction()`` start with
``BEGIN IMMEDIATE``; PostgreSQL takes ``pg_advisory_xact_lock`` before reading
the chain head.

Whoever watches the ledger (metrics time each append, the anchor log marks
every Nth head) subscribes to ``signals.audit_appended``; the ledger imports none of them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, has_request_context, request
from flask_login import current_user
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from gateway.audit import bounds
from gateway.db import dialect
from gateway.db.models import AuditEvent
from gateway.db.prepared import Prepared
from gateway.db.units import WriteUnit, core, in_write, write_transaction
from gateway.platform import signals
from gateway.platform.addresses import client_address
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc, rfc3339, utcnow

GENESIS_HASH = "0" * 64
PRUNED_EVENT = "audit.pruned"
SUPPRESSED_EVENT = "audit.suppressed"
# Arbitrary constant naming the ledger's advisory lock on PostgreSQL.
PG_LOCK_KEY = 0x6761_7465_7761_79  # "gateway"
_REDACTED = "***"
_SECRET_KEYS = frozenset({"password", "new_password", "current_password", "token", "secret"})
USER_AGENT_MAX = 300
# Column width: a login failure records the submitted (normalised) name, which NFKC can lengthen.
ACTOR_NAME_MAX = 150


# The canonical encoding: JSON with sorted keys, no whitespace, text as UTF-8 (not \u escapes).
# The one definition: canonical_bytes() encodes with it, and the verifier derives its text from it.
CANONICAL_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
# What a row's HMAC signs: prev_hash, seq and the canonical text, one per line.
HASH_MESSAGE = "%s\n%s\n%s"


@dataclass(frozen=True)
class Keyring:
    """The audit key used for new rows plus older keys (by id) that still verify old rows."""

    current_id: str
    keys: Mapping[str, str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Keyring:
        return cls(current_id=config["AUDIT_KEY_ID"], keys=dict(config["AUDIT_KEYS"]))

    def key(self, key_id: str) -> bytes | None:
        value = self.keys.get(key_id)
        return None if value is None else value.encode("utf-8")


def current_key(keyring: Keyring) -> bytes:
    """The key new rows (and anchors) are signed with."""
    key = keyring.key(keyring.current_id)
    if key is None:  # config.py refuses to start so; this only states it
        raise RuntimeError(f"AUDIT_KEY_ID {keyring.current_id!r} is not among AUDIT_KEYS")
    return key


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub_surrogates(value: Any) -> Any:
    """Lone surrogates (valid in JSON, not in UTF-8) become U+FFFD: the ledger must hold any request."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrub_surrogates(k): _scrub_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_surrogates(item) for item in value]
    return value


def _json_roundtrip(value: Any) -> Any:
    """What the database will hand back for a JSON column, so the hash covers exactly that."""
    if value is None:
        return None
    return _scrub_surrogates(json.loads(json.dumps(_finite(value), ensure_ascii=False, allow_nan=False, default=str)))


def _finite(value: Any) -> Any:
    """NaN and infinities (not JSON) become their names as text: the ledger records any request."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _clean_text(value: str | None, limit: int | None = None) -> str | None:
    """PostgreSQL text cannot hold NUL; everything else is stored as given."""
    if value is None:
        return None
    value = _SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    return value[:limit] if limit else value


def _redact(value: Any) -> Any:
    """Defence in depth: a caller that forgets to mask a password still does not leak it."""
    if isinstance(value, dict):
        return {k: (_REDACTED if str(k).lower() in _SECRET_KEYS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


_SQLITE_STORED_AT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}")


def sqlite_stored_at(stored: Any) -> str | None:
    """SQLite's stored ``at`` (UTC text, microseconds) in canonical form; None when not the one form the app writes."""
    if isinstance(stored, str) and _SQLITE_STORED_AT.fullmatch(stored):
        return stored.replace(" ", "T") + "Z"
    return None


def _canonical_at(value: datetime | str) -> str:
    """``at`` as RFC 3339; verification reads SQLite's stored text without parsing it."""
    if isinstance(value, str):
        canonical = sqlite_stored_at(value)
        if canonical is None:
            raise ValueError(f"unexpected stored time {value!r}")
        return canonical
    return rfc3339(value)


def _actor_document(actor_id: int | None, actor_name: str | None) -> dict[str, Any] | None:
    return None if actor_id is None and actor_name is None else {"id": actor_id, "name": actor_name}


def canonical_document(row: Any) -> dict[str, Any]:
    """Every column but ``hash``, as the HMAC covers it (also the API's view of a row, plus the hash)."""
    return {
        "seq": row.seq,
        "at": _canonical_at(row.at),
        "event": row.event,
        "actor": _actor_document(row.actor_id, row.actor_name),
        "source_ip": row.source_ip,
        "user_agent": row.user_agent,
        "command": row.command,
        "run_id": row.run_id,
        "params": row.params,
        "outcome": row.outcome,
        "detail": row.detail,
        "key_id": row.key_id,
        "prev_hash": row.prev_hash,
    }


def canonical_text(row: Any) -> str:
    return CANONICAL_JSON.encode(canonical_document(row))


def canonical_bytes(row: Any) -> bytes:
    return canonical_text(row).encode("utf-8")


@dataclass
class LedgerRow:
    """One appended event, as written: the columns of ``audit_events``, not an ORM object.

    ``append()`` is on every run's path twice; building an instrumented
    AuditEvent just to hash and insert it cost more than the insert itself.
    """

    seq: int
    at: datetime
    event: str
    actor_id: int | None
    actor_name: str | None
    source_ip: str | None
    user_agent: str | None
    command: str | None
    run_id: str | None
    params: Any
    outcome: str | None
    detail: Any
    key_id: str
    prev_hash: str
    hash: str = ""

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COLUMN_KEYS}


_COLUMN_KEYS = tuple(column.key for column in AuditEvent.__table__.columns)
_INSERT = Prepared(insert(AuditEvent.__table__))


def row_hash(key: bytes, row: AuditEvent | LedgerRow) -> str:
    message = HASH_MESSAGE % (row.prev_hash, row.seq, canonical_text(row))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


# The keys of the canonical document and of its actor object, as canonical_document() writes them.
_BLANK = LedgerRow(
    seq=0, at=datetime(1970, 1, 1, tzinfo=UTC), event="", actor_id=0, actor_name=None, source_ip=None,
    user_agent=None, command=None, run_id=None, params=None, outcome=None, detail=None, key_id="", prev_hash="",
)  # fmt: skip
DOCUMENT_KEYS = frozenset(canonical_document(_BLANK))
ACTOR_KEYS = frozenset(_actor_document(_BLANK.actor_id, _BLANK.actor_name) or ())


def slot_template(keys: Sequence[str], document: Collection[str]) -> str:
    """The canonical text of an object with ``document``'s keys, each value a ``%s`` slot.

    For a reader that encodes the values itself (the verifier, per stored row): the text
    around the slots is written by ``CANONICAL_JSON``, so key order and separators are
    the ledger's, not a copy.  ``keys`` are the slots' order, which must be exactly the
    document's keys in the order the canonical text holds them (ValueError otherwise), so
    each value lands in its key's slot.
    """
    if sorted(keys) != sorted(document):
        raise ValueError(f"slots {sorted(keys)} are not the document's keys {sorted(document)}")
    slots = [CANONICAL_JSON.encode("\x00" + key) for key in keys]  # "\u0000key": text no key or separator holds
    filled = CANONICAL_JSON.encode({key: "\x00" + key for key in keys})
    positions = [filled.index(slot) for slot in slots]
    if positions != sorted(positions):
        raise ValueError(f"slots {list(keys)} are not in the canonical text's order")
    template = filled.replace("%", "%%")
    for slot in slots:
        template = template.replace(slot, "%s")
    return template


def take_chain_lock(connection: Connection) -> None:
    """Hold the chain until the transaction ends: nobody else reads the head or appends meanwhile."""
    dialect.transaction_lock(connection, PG_LOCK_KEY)


_HEAD = Prepared(
    select(AuditEvent.__table__.c.seq, AuditEvent.__table__.c.hash).order_by(AuditEvent.__table__.c.seq.desc()).limit(1)
)


def chain_head(connection: Connection) -> tuple[int, str]:
    """(seq, hash) of the newest row, or (0, the genesis hash) for an empty ledger."""
    head = _HEAD.first(connection)
    return (0, GENESIS_HASH) if head is None else (int(head["seq"]), head["hash"])


def append(
    event_name: str,
    *,
    session: WriteUnit | None = None,
    actor: Mapping[str, Any] | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    command: str | None = None,
    run_id: str | None = None,
    params: Any = None,
    outcome: str | None = None,
    detail: Any = None,
    at: datetime | None = None,
) -> LedgerRow:
    """Append one event inside the caller's write unit; the caller's commit seals it.

    ``session`` is the unit: a Session from ``write_transaction()`` or a
    Connection from ``write_connection()``.  Taking part in the caller's
    transaction is what lets a run row and its ``run.started`` event land in
    one commit, or not at all.
    """
    started = time.perf_counter()
    session = session or db.session()
    if not in_write(session):
        raise RuntimeError("audit.append() must run inside write_transaction()")
    keyring = Keyring.from_config(current_app.config)
    key = current_key(keyring)

    connection = core(session)
    take_chain_lock(connection)
    head_seq, head_hash = chain_head(connection)
    row = LedgerRow(
        seq=head_seq + 1,
        at=as_utc(at or utcnow()),
        event=event_name,
        actor_id=None if actor is None else actor.get("id"),
        actor_name=None if actor is None else _clean_text(actor.get("name"), ACTOR_NAME_MAX),
        source_ip=_clean_text(source_ip, 45),
        user_agent=bounds.caller_text(user_agent, USER_AGENT_MAX),
        command=_clean_text(command, 100),
        run_id=run_id,
        params=_json_roundtrip(_redact(params)),
        outcome=outcome,
        detail=_json_roundtrip(_redact(detail)),
        key_id=keyring.current_id,
        prev_hash=head_hash,
    )
    row.hash = row_hash(key, row)
    # One prepared INSERT of the row's columns (gateway.prepared): the ledger is on every run's
    # path twice, and the ORM's unit of work, then Core's execution, cost more than the commit.
    _INSERT.execute(connection, row.columns())
    # Watchers (metrics, the anchor log) hear of it inside the caller's unit, before the commit.
    signals.send(signals.audit_appended, None, row=row, unit=session, seconds=time.perf_counter() - started)
    return row


def request_context_fields() -> dict[str, Any]:
    """Who and where, taken from the current request (actor from flask-login)."""
    if not has_request_context():
        return {}
    fields: dict[str, Any] = {
        "source_ip": client_address() or None,
        "user_agent": request.headers.get("User-Agent"),
    }
    if current_user and current_user.is_authenticated:
        fields["actor"] = current_user.actor()
    return fields


def record(event_name: str, **fields: Any) -> LedgerRow:
    """Write one event in its own transaction, filling actor and address from the request."""
    merged = {**request_context_fields(), **fields}
    with write_transaction() as session:
        return append(event_name, session=session, **merged)
