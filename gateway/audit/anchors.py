"""Anchors: the chain head, signed, kept outside the database so a rewritten ledger can be caught.

Every ``AUDIT_ANCHOR_EVERY``th row (once its transaction commits) the head is
logged as one JSON line on the ``gateway.audit.anchor`` logger; ``manage.py audit
anchor`` prints one on demand.  An anchor is an HMAC by the current audit key
over ``seq``, ``hash``, ``at`` and ``key_id``: ``audit verify --anchor`` parses it
back, and the verifier then requires that row, unchanged.

May import the ledger (keys, chain head) and the database's write units; the
ledger does not import this module: it hears of appends through
``signals.audit_appended``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from flask import Flask, current_app
from sqlalchemy.orm import Session

from gateway.audit.ledger import Keyring, LedgerRow, chain_head, current_key
from gateway.db.units import on_commit
from gateway.platform import signals
from gateway.platform.timeutil import rfc3339, utcnow

anchor_log = logging.getLogger("gateway.audit.anchor")


class AnchorError(ValueError):
    """The anchor line is not valid JSON or its signature does not check out."""


def _anchor_sig(key: bytes, seq: int, head_hash: str, at: str, key_id: str) -> str:
    body = json.dumps(
        {"seq": seq, "hash": head_hash, "at": at, "key_id": key_id}, sort_keys=True, separators=(",", ":")
    )
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_anchor(keyring: Keyring, seq: int, head_hash: str) -> dict[str, Any]:
    key = current_key(keyring)
    at = rfc3339(utcnow())
    return {
        "seq": seq,
        "hash": head_hash,
        "at": at,
        "key_id": keyring.current_id,
        "sig": _anchor_sig(key, seq, head_hash, at, keyring.current_id),
    }


def current_anchor(session: Session, keyring: Keyring) -> dict[str, Any]:
    seq, head_hash = chain_head(session.connection())
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


def _log_anchor(row: LedgerRow) -> None:
    """Anchors go to the log only once their row is committed, so the head also lives outside the DB."""
    keyring = Keyring.from_config(current_app.config)
    anchor_log.info(json.dumps(sign_anchor(keyring, row.seq, row.hash), sort_keys=True))


def _appended(sender: Any, row: LedgerRow, unit: Any, **_: Any) -> None:
    every = int(current_app.config.get("AUDIT_ANCHOR_EVERY") or 0)
    if every and row.seq % every == 0:
        on_commit(unit, lambda: _log_anchor(row))


def init_app(app: Flask) -> None:
    """Log every ``AUDIT_ANCHOR_EVERY``th head (the receiver is process-wide and reads the app's setting)."""
    signals.audit_appended.connect(_appended, weak=False)
