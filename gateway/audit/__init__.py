"""The audit ledger: the only code that writes ``audit_events``, and the code that verifies it.

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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import json.encoder
import json.scanner
import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app, has_request_context, request
from sqlalchemy import String, Text, cast, delete, func, insert, select, text, type_coerce
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from gateway.audit import bounds
from gateway.db.models import AuditEvent
from gateway.db.prepared import Prepared
from gateway.db.units import core, in_write, on_commit, write_transaction
from gateway.platform.extensions import db
from gateway.platform.metrics import observe_append
from gateway.platform.timeutil import as_utc, rfc3339, utcnow

log = logging.getLogger("gateway.audit")
anchor_log = logging.getLogger("gateway.audit.anchor")

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


def _canonical_at(value: datetime | str) -> str:
    """``at`` as RFC 3339; verification reads SQLite's stored text (UTC, microseconds) without parsing it."""
    if isinstance(value, str):
        if not _SQLITE_STORED_AT.fullmatch(value):
            raise ValueError(f"unexpected stored time {value!r}")
        return value.replace(" ", "T") + "Z"
    return rfc3339(value)


def canonical_document(row: Any) -> dict[str, Any]:
    """Every column but ``hash``, as the HMAC covers it (also the API's view of a row, plus the hash)."""
    actor = None if row.actor_id is None and row.actor_name is None else {"id": row.actor_id, "name": row.actor_name}
    return {
        "seq": row.seq,
        "at": _canonical_at(row.at),
        "event": row.event,
        "actor": actor,
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


def canonical_bytes(row: Any) -> bytes:
    document = canonical_document(row)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
    message = f"{row.prev_hash}\n{row.seq}\n".encode() + canonical_bytes(row)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


_CHAIN_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def _take_chain_lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(_CHAIN_LOCK, {"key": PG_LOCK_KEY})
    # SQLite: the write unit began with BEGIN IMMEDIATE, which holds the write lock.


_HEAD = Prepared(
    select(AuditEvent.__table__.c.seq, AuditEvent.__table__.c.hash).order_by(AuditEvent.__table__.c.seq.desc()).limit(1)
)


def _chain_head(connection: Connection) -> tuple[int, str]:
    head = _HEAD.first(connection)
    return (0, GENESIS_HASH) if head is None else (int(head["seq"]), head["hash"])


@observe_append  # latency, and refused runs by reason
def append(
    event_name: str,
    *,
    session: Session | Connection | None = None,
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
    session = session or db.session()
    if not in_write(session):
        raise RuntimeError("audit.append() must run inside write_transaction()")
    keyring = Keyring.from_config(current_app.config)
    key = _current_key(keyring)

    connection = core(session)
    _take_chain_lock(connection)
    head_seq, head_hash = _chain_head(connection)
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

    every = int(current_app.config.get("AUDIT_ANCHOR_EVERY") or 0)
    if every and row.seq % every == 0:
        on_commit(session, lambda: _log_anchor(row))
    return row


def _log_anchor(row: LedgerRow) -> None:
    """Anchors go to the log only once their row is committed, so the head also lives outside the DB."""
    keyring = Keyring.from_config(current_app.config)
    anchor_log.info(json.dumps(sign_anchor(keyring, row.seq, row.hash), sort_keys=True))


def request_context_fields() -> dict[str, Any]:
    """Who and where, taken from the current request (actor from flask-login)."""
    if not has_request_context():
        return {}
    from flask_login import current_user

    from gateway.access.netguard import client_address

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


FLOOD_KEYS_MAX = 1024
_OVERFLOW = "*"


@dataclass
class _Tally:
    """One (event, caller, reason) in the current minute: how many came, how many were left out, and who."""

    seen: int = 0
    suppressed: int = 0
    actor: Mapping[str, Any] | None = None
    source_ip: str | None = None


def _flood_key(event_name: str, fields: Mapping[str, Any]) -> tuple[tuple[str, str, str], str]:
    """(key, scope): per actor when the event has one with an id, else per source address."""
    actor = fields.get("actor")
    reason = str(fields.get("outcome") or "")[:32]
    if isinstance(actor, Mapping) and actor.get("id") is not None:
        return (event_name, f"actor:{actor['id']}", reason), "actor"
    return (event_name, f"address:{fields.get('source_ip') or ''}", reason), "address"


class FloodGate:
    """Caps noisy events (refusals, login failures, network denials) per caller and reason per minute.

    A caller is the event's actor (a user id) or, without one, its source address, so one
    caller's flood cannot use up the cap another caller's events need.  Past the cap nothing
    is written for that caller and reason that minute; what was left out is written as one
    ``audit.suppressed`` event per caller and reason when the next capped event arrives in a
    later minute, so a flood costs a few rows, not millions.  The gate itself tracks at most
    ``max_keys`` callers a minute: past that (an attacker rotating addresses or names), new
    callers share one key per event and reason (a fixed set in the code), counted and
    summarised together.
    """

    def __init__(self, per_minute: int, max_keys: int = FLOOD_KEYS_MAX):
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._window = self._current_window()
        self._tallies: dict[tuple[str, str, str], _Tally] = {}

    @staticmethod
    def _current_window() -> int:
        return int(time.time() // 60)

    def __len__(self) -> int:
        return len(self._tallies)

    def admit(self, event_name: str, fields: Mapping[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
        """Whether to write this event, and ``append()`` fields of earlier minutes' summaries to write first."""
        key, scope = _flood_key(event_name, fields)
        with self._lock:
            summaries = self._roll()
            tally = self._tallies.get(key)
            if tally is None and len(self._tallies) >= self.max_keys:
                key, scope = (event_name, _OVERFLOW, key[2]), "overflow"
                tally = self._tallies.setdefault(key, _Tally())
            elif tally is None:
                actor = fields.get("actor") if scope == "actor" else None
                tally = self._tallies[key] = _Tally(actor=actor, source_ip=fields.get("source_ip"))
            tally.seen += 1
            admitted = tally.seen <= self.per_minute
            if not admitted:
                tally.suppressed += 1
            return admitted, summaries

    def _roll(self) -> list[dict[str, Any]]:
        """On the first event of a new minute: the last minute's summaries, and a fresh count."""
        window = self._current_window()
        if window == self._window:
            return []
        start = rfc3339(datetime.fromtimestamp(self._window * 60, tz=UTC))
        summaries = [
            {
                "actor": tally.actor,
                "source_ip": tally.source_ip,
                "outcome": reason,
                "detail": {
                    "window_start": start,
                    "event": event_name,
                    "reason": reason,
                    "by": "all" if who == _OVERFLOW else who.partition(":")[0],
                    "suppressed": tally.suppressed,
                },
            }
            for (event_name, who, reason), tally in self._tallies.items()
            if tally.suppressed
        ]
        self._window, self._tallies = window, {}
        return summaries


def record_capped(event_name: str, *, session: Session | Connection | None = None, **fields: Any) -> LedgerRow | None:
    """Record a refusal: under the per-minute flood cap, and bounded (``gateway.audit.bounds.refusal``).

    Every event written for a refused request comes through here, so none can grow the
    ledger: at most ``AUDIT_FLOOD_PER_MINUTE`` rows per caller and reason a minute, each
    under 16 KB.  With ``session`` it is appended into the caller's write unit, else
    written in its own transaction.
    """
    merged = {**request_context_fields(), **fields}
    gate: FloodGate = current_app.extensions["gateway.audit_floodgate"]
    admitted, summaries = gate.admit(event_name, merged)
    if not summaries and not admitted:
        return None
    merged["params"], merged["detail"] = bounds.refusal(merged.get("params"), merged.get("detail"))
    if session is not None:
        return _append_capped(session, event_name, admitted, summaries, merged)
    with write_transaction() as tx:
        return _append_capped(tx, event_name, admitted, summaries, merged)


def _append_capped(
    session: Session | Connection,
    event_name: str,
    admitted: bool,
    summaries: list[dict[str, Any]],
    fields: dict[str, Any],
) -> LedgerRow | None:
    for summary in summaries:
        append(SUPPRESSED_EVENT, session=session, **summary)
    return append(event_name, session=session, **fields) if admitted else None


# --- verification -------------------------------------------------------------------


@dataclass
class Verification:
    ok: bool
    checked: int = 0
    first_bad_seq: int | None = None
    reason: str | None = None
    head: dict[str, Any] | None = None
    pruned_claims: dict[int, str] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_bad_seq": self.first_bad_seq, "head": self.head}


class AnchorError(ValueError):
    """The anchor line is not valid JSON or its signature does not check out."""


def _anchor_sig(key: bytes, seq: int, head_hash: str, at: str, key_id: str) -> str:
    body = json.dumps(
        {"seq": seq, "hash": head_hash, "at": at, "key_id": key_id}, sort_keys=True, separators=(",", ":")
    )
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def _current_key(keyring: Keyring) -> bytes:
    key = keyring.key(keyring.current_id)
    if key is None:  # config.py refuses to start so; this only states it
        raise RuntimeError(f"AUDIT_KEY_ID {keyring.current_id!r} is not among AUDIT_KEYS")
    return key


def sign_anchor(keyring: Keyring, seq: int, head_hash: str) -> dict[str, Any]:
    key = _current_key(keyring)
    at = rfc3339(utcnow())
    return {
        "seq": seq,
        "hash": head_hash,
        "at": at,
        "key_id": keyring.current_id,
        "sig": _anchor_sig(key, seq, head_hash, at, keyring.current_id),
    }


def current_anchor(session: Session, keyring: Keyring) -> dict[str, Any]:
    seq, head_hash = _chain_head(session.connection())
    return sign_anchor(keyring, seq, head_hash)


def parse_anchor(line: str, keyring: Keyring) -> tuple[int, str]:
    try:
        data = json.loads(line)
        seq, head_hash, at, key_id, sig = (data[k] for k in ("seq", "hash", "at", "key_id", "sig"))
    except (ValueError, KeyError, TypeError):
        raise AnchorError("anchor is not a JSON object with seq, hash, at, key_id and sig") from None
    key = keyring.key(str(key_id))
    if key is None:
        raise AnchorError(f"anchor is signed with unknown key id {key_id!r}")
    if not isinstance(seq, int) or not hmac.compare_digest(
        _anchor_sig(key, seq, str(head_hash), str(at), str(key_id)), str(sig)
    ):
        raise AnchorError("anchor signature does not match")
    return seq, str(head_hash)


# Verification reads every column as stored and rebuilds the canonical text itself: the same bytes
# as canonical_bytes() (tests/test_audit_verify.py holds the two together), at a fraction of the
# cost of ORM objects, the drivers' JSON and datetime parsing and a whole-document json.dumps per row.
VERIFY_BATCH = 10_000
# PostgreSQL formats ``at`` itself, exactly as rfc3339() does (UTC, microseconds, "Z").
_PG_CANONICAL_AT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
_encode_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for str
_encode_value = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
_NESTED_CACHE_MAX = 4096


def _c_json() -> tuple[Any, Any]:
    """The json module's C scanner and encoder, built once with ``canonical_bytes``' settings.

    ``json.loads``/``json.dumps`` build or wrap these on every call; verification calls them twice per
    row. Without the C accelerator the public functions are used (same output, slower).
    """
    # The C accelerators are optional and untyped (not in typeshed): looked up, not imported.
    make_scanner: Any = getattr(json.scanner, "c_make_scanner", None)
    make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
    scanner = make_scanner(json.JSONDecoder()) if make_scanner else None
    encoder = None
    if make_encoder:
        # markers None: no circularity check (parsed JSON cannot be circular); the rest as JSONEncoder.iterencode.
        encoder = make_encoder(None, json.JSONEncoder().default, _encode_string, None, ":", ",", True, False, True)
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


def _json_scalar(value: Any) -> str:
    """One column's value as canonical JSON: the common types directly, anything else through the encoder."""
    kind = type(value)
    if kind is str:
        return _encode_string(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    return _encode_value(value)


def _json_nested(stored: Any, cache: dict[str, str]) -> str:
    """A JSON column's stored text, parsed as the driver would and re-encoded canonically (memoised by
    text: ``run.started`` and ``run.finished`` of a run carry the same params)."""
    if stored is None:
        return "null"
    if not isinstance(stored, str):  # SQLite's NUMERIC affinity keeps a bare number as a number
        return _encode_value(stored)
    encoded = cache.get(stored)
    if encoded is None:
        value = _parse_stored_json(stored)
        if _ENCODE_JSON is not None and isinstance(value, (dict, list)):
            encoded = "".join(_ENCODE_JSON(value, 0))
        else:
            encoded = _encode_value(value)
        if len(cache) >= _NESTED_CACHE_MAX:
            cache.clear()
        cache[stored] = encoded
    return encoded


def _stored_rows(session: Session, start_seq: int) -> Any:
    """The ledger from ``start_seq`` on, oldest first, streamed in batches (one statement, one snapshot).

    The table's columns, as text where the database holds text: JSON columns as
    stored (parsed once, here, not by the driver and again by SQLAlchemy), ``at`` as SQLite's stored
    UTC text (checked in Python) or formatted by PostgreSQL. PostgreSQL streams through a
    server-side cursor, SQLite through its own cursor.
    """
    c = AuditEvent.__table__.c
    at: ColumnElement[Any]
    params: ColumnElement[Any]
    detail: ColumnElement[Any]
    if session.get_bind().dialect.name == "postgresql":
        at = func.to_char(func.timezone("UTC", c.at), _PG_CANONICAL_AT)
        params, detail = cast(c.params, Text), cast(c.detail, Text)
    else:
        at = type_coerce(c.at, String)
        params, detail = type_coerce(c.params, String), type_coerce(c.detail, String)
    query = select(
        c.seq, at, c.event, c.actor_id, c.actor_name, c.source_ip, c.user_agent, c.command, c.run_id,
        params, c.outcome, detail, c.key_id, c.prev_hash, c.hash,
    ).where(c.seq >= start_seq).order_by(c.seq)  # fmt: skip
    return session.execute(query, execution_options={"yield_per": VERIFY_BATCH})


def _sqlite_at(stored: Any) -> str | None:
    """SQLite's stored time in canonical form, or None when it is not the one form the app writes."""
    if isinstance(stored, str) and _SQLITE_STORED_AT.fullmatch(stored):
        return stored.replace(" ", "T") + "Z"
    return None


def _pruned_claims(session: Session) -> dict[int, str]:
    """first kept seq -> the prev_hash it must carry, as claimed by ``audit.pruned`` events.

    A claim only counts because its own row is verified later in the same pass.
    """
    claims: dict[int, str] = {}
    for detail in session.scalars(select(AuditEvent.detail).where(AuditEvent.event == PRUNED_EVENT)):
        if isinstance(detail, dict) and isinstance(detail.get("first_kept_seq"), int):
            claims[detail["first_kept_seq"]] = str(detail.get("cut_hash"))
    return claims


def _first_missing(start: int, found_seq: int, claims: Mapping[int, str]) -> int:
    """The first seq that should exist before ``found_seq``: just after a recorded cut, else ``start``.

    After a prune, rows before the cut are legitimately gone; naming seq 1
    then would send the operator looking in the wrong place.
    """
    return max((seq for seq in claims if start <= seq < found_seq), default=start)


def verify(
    session: Session, keyring: Keyring, *, from_seq: int | None = None, anchor: tuple[int, str] | None = None
) -> Verification:
    """Recompute the chain and name the first bad ``seq`` (a missing seq counts as bad).

    Per row: seq continuity, the ``prev_hash`` link, and the HMAC recomputed
    from the canonical text of every stored column. The loop is written for
    speed (issue 5: >= 50,000 events/s): locals, tuple unpacking, one
    ``hmac.digest`` call per row; ``canonical_bytes`` remains the definition.
    """
    result = Verification(ok=True, pruned_claims=_pruned_claims(session))
    claims = result.pruned_claims
    expected_seq: int | None = None
    expected_prev: str | None = None
    if from_seq is not None and from_seq > 1:
        before = session.get(AuditEvent, from_seq - 1)
        if before is not None:
            expected_seq, expected_prev = from_seq, before.hash
    start = from_seq or 1
    anchor_seq, anchor_hash = anchor if anchor is not None else (None, None)
    anchor_seen = False
    keys = {key_id: key.encode("utf-8") for key_id, key in keyring.keys.items()}
    sqlite = session.get_bind().dialect.name == "sqlite"
    # key_id and prev_hash are str once they have matched a key id and the chain; seq an int.
    scalar, quote, digest, same = _json_scalar, _encode_string, hmac.digest, hmac.compare_digest
    params_cache: dict[str, str] = {}
    detail_cache: dict[str, str] = {}
    checked = 0
    head: tuple[int, str] | None = None

    def fail(seq: int, reason: str) -> Verification:
        result.ok, result.first_bad_seq, result.reason = False, seq, reason
        result.checked = checked
        result.head = None if head is None else {"seq": head[0], "hash": head[1]}  # the last row found intact
        return result

    rows = _stored_rows(session, start)
    try:
        for batch in rows.partitions():
            for (
                seq, at, event_name, actor_id, actor_name, source_ip, user_agent, command, run_id,
                params, outcome, detail, key_id, prev_hash, stored_hash,
            ) in batch:  # fmt: skip
                if expected_seq is None:
                    # The chain's first row: seq 1 from genesis, or the first row kept by a recorded prune.
                    if seq == 1:
                        if prev_hash != GENESIS_HASH:
                            return fail(seq, "first row does not start from the genesis hash")
                    elif claims.get(seq) != prev_hash:
                        return fail(_first_missing(start, seq, claims), "rows before this one are missing")
                else:
                    if seq != expected_seq:
                        return fail(expected_seq, "row missing")
                    if prev_hash != expected_prev:
                        return fail(seq, "prev_hash does not match the previous row")
                key = keys.get(key_id)
                if key is None:
                    return fail(seq, f"unknown key id {key_id!r}")
                if sqlite:
                    at = _sqlite_at(at)
                    if at is None:
                        return fail(seq, "stored time is not in the ledger's format")
                seq_text = str(seq)
                if actor_id is None and actor_name is None:
                    actor = "null"
                else:
                    actor = '{"id":' + scalar(actor_id) + ',"name":' + scalar(actor_name) + "}"
                # canonical_bytes(): the document's keys in sorted order, no whitespace.
                canonical = (
                    '{"actor":' + actor
                    + ',"at":' + scalar(at)
                    + ',"command":' + scalar(command)
                    + ',"detail":' + _json_nested(detail, detail_cache)
                    + ',"event":' + scalar(event_name)
                    + ',"key_id":' + quote(key_id)
                    + ',"outcome":' + scalar(outcome)
                    + ',"params":' + _json_nested(params, params_cache)
                    + ',"prev_hash":' + quote(prev_hash)
                    + ',"run_id":' + scalar(run_id)
                    + ',"seq":' + seq_text
                    + ',"source_ip":' + scalar(source_ip)
                    + ',"user_agent":' + scalar(user_agent)
                    + "}"
                )  # fmt: skip
                message = f"{prev_hash}\n{seq_text}\n{canonical}".encode()
                computed = digest(key, message, "sha256").hex()
                if not (isinstance(stored_hash, str) and stored_hash.isascii() and same(computed, stored_hash)):
                    return fail(seq, "hash does not match the row")
                if seq == anchor_seq:
                    if stored_hash != anchor_hash:
                        return fail(seq, "row differs from the anchor")
                    anchor_seen = True
                checked += 1
                head = (seq, stored_hash)
                expected_seq, expected_prev = seq + 1, stored_hash
    finally:
        rows.close()

    result.checked = checked
    result.head = None if head is None else {"seq": head[0], "hash": head[1]}
    if anchor_seq is not None and not anchor_seen and anchor_seq >= start:
        head_seq = head[0] if head else start - 1
        if anchor_seq > head_seq:
            return fail(head_seq + 1, "rows after this point are missing (anchor is ahead of the ledger)")
    return result


# --- pruning ----------------------------------------------------------------------------


def prune(older_than: datetime, **fields: Any) -> LedgerRow | None:
    """Delete rows older than ``older_than``, recording the cut so verification still passes.

    Runs with the schema owner's role in production (the application role may
    only INSERT and SELECT on ``audit_events``).
    """
    with write_transaction() as session:
        _take_chain_lock(session.connection())
        last_old = session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.at < as_utc(older_than)))
        head_seq, _ = _chain_head(session.connection())
        if last_old is None:
            return None
        # Never cut the head itself: the first kept row must exist to carry the chain.
        last_old = min(int(last_old), head_seq - 1)
        if last_old < 1:
            return None
        first_kept = session.get(AuditEvent, last_old + 1)
        if first_kept is None:  # seq is gapless below the head: only a damaged ledger gets here
            raise RuntimeError(f"audit event {last_old + 1} is missing; verify the chain before pruning")
        deleted = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq <= last_old))
        pruned = append(
            PRUNED_EVENT,
            session=session,
            outcome="ok",
            detail={
                "first_kept_seq": first_kept.seq,
                "cut_hash": first_kept.prev_hash,
                "deleted": int(deleted or 0),
                "older_than": rfc3339(older_than),
            },
            **fields,
        )
        session.execute(delete(AuditEvent).where(AuditEvent.seq <= last_old))
        return pruned


def init_app(app: Any) -> None:
    app.extensions["gateway.audit_floodgate"] = FloodGate(app.config["AUDIT_FLOOD_PER_MINUTE"])
