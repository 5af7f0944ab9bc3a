"""The scheduled audit-chain verification's result, kept in the ledger so every replica can report it.

Verification runs once an hour in a CronJob (``manage.py audit verify
--record``), not in the replicas, so its result has to live somewhere every
replica can read: it is appended to the ledger itself as an ``audit.verified``
event (``outcome`` ``ok`` or ``broken``; ``detail`` says which range was
checked, how many rows and the first bad ``seq``).  Each replica's
``/metrics`` then reports ``gateway_audit_chain_ok`` and
``gateway_audit_chain_verified_timestamp_seconds`` from the newest such event:

- read through the ``(event, seq)`` index, one row, at most once per
  ``CACHE_SECONDS`` per process (scrapes of every gunicorn worker and replica
  stay cheap, and each computes the same answer from the same row, so
  multiprocess mode needs no shared state);
- the row's own HMAC is checked before it is believed: an ``ok`` row forged
  straight into the table (by someone without the audit key) reports 0;
- no recorded verification yet means no series at all, so an alert on
  ``absent()`` or on a stale timestamp catches a CronJob that never ran or
  could not check (exit 2 records nothing).

``create_app`` hands ``latest`` to ``gateway.platform.metrics``, which does not import the
audit package.  May import the ledger and the verifier.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway.audit import ledger
from gateway.audit.ledger import Keyring, LedgerRow, row_hash
from gateway.audit.verifier import Verification, verify
from gateway.db.models import AuditEvent
from gateway.platform.extensions import db

log = logging.getLogger("gateway.chain_status")

VERIFIED_EVENT = "audit.verified"
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class LastVerification:
    """What the newest ``audit.verified`` event says, and whether that row itself is genuine."""

    ok: bool
    at: float  # Unix time the verification was recorded
    seq: int  # the event's own seq
    genuine: bool


def record(
    result: Verification,
    *,
    from_seq: int | None = None,
    anchor: tuple[int, str] | None = None,
    actor: dict[str, Any] | None = None,
) -> LedgerRow:
    """Append the result of a verification as ``audit.verified`` (its own transaction)."""
    detail = {
        "ok": result.ok,
        "checked": result.checked,
        "from_seq": from_seq or 1,
        "to_seq": result.head["seq"] if result.head else None,  # the last row found intact
        "first_bad_seq": result.first_bad_seq,
        "reason": result.reason,
        "anchor_seq": anchor[0] if anchor else None,
    }
    row = ledger.record(VERIFIED_EVENT, actor=actor, outcome="ok" if result.ok else "broken", detail=detail)
    forget(current_app)
    return row


def verify_and_record(anchor: tuple[int, str] | None = None, actor: dict[str, Any] | None = None) -> Verification:
    """Verify the whole chain (needs an app context) and record the result.

    Reads through a session of its own, so it sees the ledger as committed now,
    not a snapshot the caller's session may still hold.
    """
    with Session(db.engine) as session:
        result = verify(session, Keyring.from_config(current_app.config), anchor=anchor)
    record(result, anchor=anchor, actor=actor)
    return result


def _genuine(row: AuditEvent) -> bool:
    key = Keyring.from_config(current_app.config).key(row.key_id)
    return key is not None and hmac.compare_digest(row_hash(key, row), row.hash)


def _read() -> LastVerification | None:
    with Session(db.engine) as session:
        row = session.scalars(
            select(AuditEvent).where(AuditEvent.event == VERIFIED_EVENT).order_by(AuditEvent.seq.desc()).limit(1)
        ).first()
        if row is None:
            return None
        genuine = _genuine(row)
        return LastVerification(
            ok=genuine and row.outcome == "ok", at=row.at.timestamp(), seq=int(row.seq), genuine=genuine
        )


@dataclass
class _Cache:
    lock: threading.Lock
    value: LastVerification | None = None
    fetched: float = float("-inf")


def _cache(app: Any) -> _Cache:
    cache: _Cache | None = app.extensions.get("gateway.chain_status")
    if cache is None:
        cache = app.extensions.setdefault("gateway.chain_status", _Cache(lock=threading.Lock()))
    return cache


def forget(app: Any) -> None:
    """Drop this process's cached answer (a verification was just recorded here)."""
    cache = _cache(app)
    with cache.lock:
        cache.fetched = float("-inf")


def latest() -> LastVerification | None:
    """The newest recorded verification (needs an app context), at most ``CACHE_SECONDS`` old.

    A database error is logged and answered with the last value read, if any:
    the scrape must not fail because the ledger is briefly unreachable.
    """
    cache = _cache(current_app)
    with cache.lock:  # one reader per process at a time; the others take its answer
        if time.monotonic() - cache.fetched < CACHE_SECONDS:
            return cache.value
        try:
            cache.value = _read()
        except SQLAlchemyError:
            log.warning("could not read the last audit verification", exc_info=True)
            return cache.value
        cache.fetched = time.monotonic()
        return cache.value
