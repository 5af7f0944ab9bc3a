"""Every statement on ``audit_forward_cursors``: a cursor per destination and the lease of whoever forwards it.

The lease is one conditional UPDATE, against the database clock so it means the
same on every replica: taken when free, expired or already ours, renewed by its
holder, released on a clean stop.  The cursor only moves by its holder and only
from the position the holder read (``advance``), so an operator's
``forward-reset`` in between wins and the holder re-reads.  Failures are kept
as a reason from ``outbound.FAILURE_REASONS`` and the time they began: the lag
is the alarm, nothing is written to the ledger per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from gateway.audit.ledger import chain_head
from gateway.db import dialect
from gateway.db.models import AuditForwardCursor
from gateway.db.units import rows_matched, write_transaction

C = AuditForwardCursor


@dataclass(frozen=True)
class Position:
    """The newest event a destination acknowledged (``seq`` 0 and no hash: nothing yet)."""

    seq: int
    hash: str | None


def ensure(name: str) -> None:
    """Give a destination seen for the first time its cursor at the ledger's head: it starts from now."""
    with write_transaction() as tx:
        if tx.get(C, name) is not None:
            return
        head_seq, head_hash = chain_head(tx.connection())
        now = dialect.database_now(tx)
        tx.execute(
            dialect.insert_unless_present(tx, C, ["destination"]).values(
                destination=name, last_seq=head_seq, last_hash=head_hash if head_seq else None, created_at=now
            )
        )


def take_lease(name: str, holder: str, seconds: float) -> Position | None:
    """Hold (or keep holding) ``name``'s lease for ``seconds``; its position, or None while another holds it."""
    with write_transaction() as tx:
        now = dialect.database_now(tx)
        taken = tx.execute(
            update(C)
            .where(
                C.destination == name, or_(C.lease_holder.is_(None), C.lease_holder == holder, C.lease_expires_at < now)
            )
            .values(lease_holder=holder, lease_expires_at=now + timedelta(seconds=seconds))
        )
        if rows_matched(taken) != 1:
            return None
        row = tx.execute(select(C.last_seq, C.last_hash).where(C.destination == name)).one()
        return Position(int(row.last_seq), row.last_hash)


def advance(name: str, holder: str, expected: Position, to: Position, seconds: float) -> bool:
    """Move the cursor from ``expected`` to ``to`` and renew the lease; False when the lease or the cursor changed."""
    with write_transaction() as tx:
        now = dialect.database_now(tx)
        moved = tx.execute(
            update(C)
            .where(C.destination == name, C.lease_holder == holder, C.last_seq == expected.seq)
            .values(
                last_seq=to.seq,
                last_hash=to.hash,
                forwarded_at=now,
                failing_since=None,
                last_error=None,
                lease_expires_at=now + timedelta(seconds=seconds),
            )
        )
        return rows_matched(moved) == 1


def failed(name: str, holder: str, reason: str) -> None:
    """Record why the last send failed (the first failure's time is kept: how long it has been failing)."""
    with write_transaction() as tx:
        now = dialect.database_now(tx)
        tx.execute(
            update(C)
            .where(C.destination == name, C.lease_holder == holder)
            .values(last_error=reason, failing_since=func.coalesce(C.failing_since, now))
        )


def release(name: str, holder: str) -> None:
    """Give the lease up (a clean stop): another replica takes over at once instead of after the expiry."""
    with write_transaction() as tx:
        tx.execute(
            update(C)
            .where(C.destination == name, C.lease_holder == holder)
            .values(lease_holder=None, lease_expires_at=None)
        )


def all_cursors(session: Session) -> list[AuditForwardCursor]:
    return list(session.scalars(select(C).order_by(C.destination)))


def slowest(session: Session) -> list[tuple[str, int]]:
    """(destination, last forwarded seq) of every cursor, slowest first (pruning must not cut past them)."""
    rows = session.execute(select(C.destination, C.last_seq).order_by(C.last_seq, C.destination)).all()
    return [(row.destination, int(row.last_seq)) for row in rows]


def move(tx: Session, name: str, to: Position) -> Position | None:
    """Set ``name``'s cursor to ``to`` inside the caller's write unit (an audited reset); its previous position."""
    row = tx.get(C, name)
    if row is None:
        return None
    previous = Position(int(row.last_seq), row.last_hash)
    tx.execute(update(C).where(C.destination == name).values(last_seq=to.seq, last_hash=to.hash))
    return previous


def forget(tx: Session, name: str) -> Position | None:
    """Delete ``name``'s cursor inside the caller's write unit (a destination retired for good); its last position."""
    row = tx.get(C, name)
    if row is None:
        return None
    previous = Position(int(row.last_seq), row.last_hash)
    tx.execute(delete(C).where(C.destination == name))
    return previous
