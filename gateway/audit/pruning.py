"""Pruning: the ledger's retention, the one place rows are deleted (``manage.py audit prune``).

May import the ledger: the cut is recorded as an ``audit.pruned`` event the verifier trusts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from gateway.audit.ledger import PRUNED_EVENT, LedgerRow, append, chain_head, take_chain_lock
from gateway.db.models import AuditEvent
from gateway.db.units import write_transaction
from gateway.platform.timeutil import as_utc, rfc3339


def prune(older_than: datetime, **fields: Any) -> LedgerRow | None:
    """Delete rows older than ``older_than``, recording the cut so verification still passes.

    Runs with the schema owner's role in production (the application role may
    only INSERT and SELECT on ``audit_events``).
    """
    with write_transaction() as session:
        take_chain_lock(session.connection())
        last_old = session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.at < as_utc(older_than)))
        head_seq, _ = chain_head(session.connection())
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
