"""An operator's moves of a cursor, each audited in the same transaction: ``forward-reset`` and ``--forget``.

``reset`` sends a destination the ledger again from a ``seq`` (a receiver lost
data, or a new SIEM wants history); the forwarder holding the lease notices at
its next batch (its conditional cursor update no longer matches) and carries on
from there.  ``forget`` deletes the cursor of a destination retired from
``AUDIT_FORWARD``, so it no longer holds prunes back.  A refused request is
audited too (``outcome`` ``refused``) and changes nothing.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import func, select

from gateway.audit import bounds
from gateway.audit.forwarding import cursors
from gateway.audit.forwarding.cursors import Position
from gateway.audit.ledger import append, chain_head, record
from gateway.db.dialect import database_now
from gateway.db.models import AuditEvent
from gateway.db.units import write_transaction

RESET_EVENT = "audit.forward_reset"
FORGOTTEN_EVENT = "audit.forward_forgotten"


class ForwardRefused(ValueError):
    """The request names no destination, or a ``seq`` the ledger cannot send from; ``field`` says which."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def configured(name: str) -> bool:
    return any(destination.name == name for destination in current_app.config["AUDIT_FORWARD"])


def reset(name: str, from_seq: int, *, actor: dict[str, Any] | None = None) -> tuple[Position | None, Position]:
    """Make ``name`` send again from ``from_seq`` (``head + 1``: from now on); (previous, new) positions.

    :raise ForwardRefused: unknown destination, or ``from_seq`` outside the kept ledger (recorded as refused).
    """
    try:
        with write_transaction() as tx:
            stored = tx.get(cursors.C, name) is not None
            if not stored and not configured(name):
                raise ForwardRefused("NAME", f"no destination named {name!r} (neither in AUDIT_FORWARD nor stored)")
            head_seq, _ = chain_head(tx.connection())
            oldest = tx.scalar(select(func.min(AuditEvent.seq))) or 1
            if not oldest <= from_seq <= head_seq + 1:
                raise ForwardRefused(
                    "--from-seq", f"must be between {oldest} and {head_seq + 1} (the ledger keeps {oldest}-{head_seq})"
                )
            before = tx.get(AuditEvent, from_seq - 1) if from_seq > 1 else None
            to = Position(from_seq - 1, before.hash if before is not None else None)
            previous = cursors.move(tx, name, to) if stored else None
            if not stored:
                tx.add(cursors.C(destination=name, last_seq=to.seq, last_hash=to.hash, created_at=database_now(tx)))
            append(
                RESET_EVENT, session=tx, actor=actor, outcome="ok",
                detail={"destination": name, "from_seq": from_seq, "previous_seq": previous.seq if previous else None},
            )  # fmt: skip
            return previous, to
    except ForwardRefused as refused:
        _refused(RESET_EVENT, name, refused, actor, from_seq=from_seq)
        raise


def forget(name: str, *, actor: dict[str, Any] | None = None) -> Position:
    """Delete the cursor of ``name``, a destination no longer configured; its last position.

    :raise ForwardRefused: still configured, or no such cursor (recorded as refused).
    """
    try:
        if configured(name):
            raise ForwardRefused("NAME", f"{name!r} is still in AUDIT_FORWARD; remove it there first")
        with write_transaction() as tx:
            previous = cursors.forget(tx, name)
            if previous is None:
                raise ForwardRefused("NAME", f"no stored cursor named {name!r}")
            append(
                FORGOTTEN_EVENT,
                session=tx,
                actor=actor,
                outcome="ok",
                detail={"destination": name, "last_seq": previous.seq},
            )
            return previous
    except ForwardRefused as refused:
        _refused(FORGOTTEN_EVENT, name, refused, actor)
        raise


def _refused(event: str, name: str, refused: ForwardRefused, actor: dict[str, Any] | None, **detail: Any) -> None:
    reason = bounds.caller_text(refused.message, 200)
    detail = {"destination": bounds.caller_text(name, 32), **detail, "field": refused.field, "reason": reason}
    record(event, actor=actor, outcome="refused", detail=detail)
