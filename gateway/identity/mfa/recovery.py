"""One-time recovery codes: ten per issue, shown once, stored as SHA-256, each usable once.

A code carries 80 random bits, so its unsalted SHA-256 gives nothing to guess
from (as with API tokens); using one is a conditional UPDATE, so two requests
racing with the same code cannot both sign in.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from gateway.db.models import MfaRecoveryCode
from gateway.db.units import rows_matched
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

COUNT = 10
GROUP = 4


def _hash(code: str) -> str:
    return hashlib.sha256(normalise(code).encode("ascii", "ignore")).hexdigest()


def normalise(text: str) -> str:
    """What a typed code means: case, spaces and dashes do not matter."""
    return "".join(ch for ch in text.lower() if ch.isascii() and ch.isalnum())


def _new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()  # 16 characters
    return "-".join(raw[i : i + GROUP] for i in range(0, len(raw), GROUP))


def issue_in(tx: Session, user_id: int) -> list[str]:
    """Inside a write transaction: ten new codes replace every earlier one; returned once, to be shown once."""
    tx.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id))
    codes = [_new_code() for _ in range(COUNT)]
    now = utcnow()
    tx.add_all(MfaRecoveryCode(user_id=user_id, code_hash=_hash(code), created_at=now) for code in codes)
    return codes


def remaining(user_id: int) -> int:
    query = select(func.count()).where(MfaRecoveryCode.user_id == user_id, MfaRecoveryCode.used_at.is_(None))
    return int(db.session.scalar(query) or 0)


def use_in(tx: Session, user_id: int, typed: str) -> bool:
    """Inside a write transaction: spend the user's unused code ``typed``; False when it is not one."""
    if len(normalise(typed)) != 16:
        return False
    result = tx.execute(
        update(MfaRecoveryCode)
        .where(
            MfaRecoveryCode.user_id == user_id,
            MfaRecoveryCode.code_hash == _hash(typed),
            MfaRecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return rows_matched(result) == 1
