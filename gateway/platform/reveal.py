"""Show a secret exactly once on the page after a redirect, without storing it anywhere readable.

A form that creates a secret (an API token, an invite link) must not answer
the POST with it: a browser refresh would submit the form again. It redirects
instead, and the page it lands on shows the secret once. In between, the
secret is split in two: a random pad of the same length goes into the session
cookie (signed, but readable by whoever holds it), the secret XOR that pad into
a row tied to the server-side session record. Either half alone is random
bytes. The page that shows the secret deletes the row, so a refresh, a second
tab or a replayed copy of the cookie finds nothing; a row nobody collected is
useless after ``MAX_AGE`` and is deleted by the next stash.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import session
from sqlalchemy import delete

from gateway.db.models import OneTimeReveal
from gateway.db.units import rows_matched, write_transaction
from gateway.identity import sessions
from gateway.platform.timeutil import utcnow

MAX_AGE = timedelta(minutes=5)
MAX_SECRET_BYTES = 500  # the masked half is stored as hex in a 1024-character column
_COOKIE_PREFIX = "reveal:"


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def stash(kind: str, secret: str) -> None:
    """Keep ``secret`` for the next ``take(kind)`` in this browser session (a signed-in request)."""
    record = sessions.current_record()
    if record is None:
        raise RuntimeError("a one-time reveal needs a signed-in session")
    data = secret.encode("utf-8")
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError("secret too long for a one-time reveal")
    pad = secrets.token_bytes(len(data))
    reveal_id = secrets.token_hex(16)
    with write_transaction() as tx:
        tx.execute(delete(OneTimeReveal).where(OneTimeReveal.created_at < utcnow() - MAX_AGE))
        masked = _xor(data, pad).hex()
        tx.add(OneTimeReveal(id=reveal_id, session_id=record.id, kind=kind, masked=masked, created_at=utcnow()))
    session[_COOKIE_PREFIX + kind] = {"id": reveal_id, "pad": pad.hex()}


def take(kind: str) -> str | None:
    """The secret stashed under ``kind`` for this session, once; None if there is none (any more)."""
    held = session.pop(_COOKIE_PREFIX + kind, None)
    record = sessions.current_record()
    if not isinstance(held, dict) or record is None:
        return None
    reveal_id, pad_hex = held.get("id"), held.get("pad")
    if not isinstance(reveal_id, str) or not isinstance(pad_hex, str):
        return None
    with write_transaction() as tx:
        row = tx.get(OneTimeReveal, reveal_id)
        if row is None or row.session_id != record.id or row.kind != kind:
            return None
        masked, fresh = row.masked, row.created_at >= utcnow() - MAX_AGE
        # Conditional delete: of two requests racing for the same row, only one shows the secret.
        deleted = rows_matched(tx.execute(delete(OneTimeReveal).where(OneTimeReveal.id == reveal_id)))
    if not deleted or not fresh:
        return None
    try:
        return _xor(bytes.fromhex(masked), bytes.fromhex(pad_hex)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
