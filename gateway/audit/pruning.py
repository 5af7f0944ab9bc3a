"""Pruning: the ledger's retention, the one place rows are deleted (``manage.py audit prune``).

May import the ledger (the cut is recorded as an ``audit.pruned`` event the
verifier trusts) and the forwarding cursors: a prune that would delete rows a
destination has not been sent yet is refused, and recorded as
``audit.prune_refused``, unless forced; a forced cut names the destinations it
cut past in its ``audit.pruned`` event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from gateway.audit.forwarding.cursors import slowest
from gateway.audit.ledger import PRUNED_EVENT, LedgerRow, append, chain_head, record, take_chain_lock
from gateway.db.models import AuditEvent
from gateway.db.units import write_transaction
from gateway.platform.timeutil import as_utc, rfc3339

REFUSED_EVENT = "audit.prune_refused"


class PruneRefused(Exception):
    """The cut would delete events that forwarding destinations have not been sent yet."""

    def __init__(self, last_cut: int, behind: list[tuple[str, int]]):
        self.last_cut, self.behind = last_cut, behind
        slowest_name, slowest_seq = behind[0]
        super().__init__(
            f"destination {slowest_name!r} has been sent up to seq {slowest_seq}; the prune would delete up to seq"
            f" {last_cut}, including events it has not been sent ({len(behind)} destination(s) behind)"
        )


def prune(older_than: datetime, *, force: bool = False, **fields: Any) -> LedgerRow | None:
    """Delete rows older than ``older_than``, recording the cut so verification still passes.

    Runs with the schema owner's role in production (the application role may
    only INSERT and SELECT on ``audit_events``).  :raise PruneRefused: a forwarding
    cursor stands before the cut and ``force`` is not given (the refusal is recorded).
    """
    try:
        return _prune(older_than, force, fields)
    except PruneRefused as refused:
        detail = {
            "would_cut_to_seq": refused.last_cut,
            "behind": [{"destination": name, "sent_to_seq": seq} for name, seq in refused.behind],
            "older_than": rfc3339(older_than),
        }
        record(REFUSED_EVENT, outcome="behind_cursor", detail=detail, **fields)
        raise


def _prune(older_than: datetime, force: bool, fields: dict[str, Any]) -> LedgerRow | None:
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
        behind = [(name, seq) for name, seq in slowest(session) if seq < last_old]
        if behind and not force:
            raise PruneRefused(last_old, behind)
        first_kept = session.get(AuditEvent, last_old + 1)
        if first_kept is None:  # seq is gapless below the head: only a damaged ledger gets here
            raise RuntimeError(f"audit event {last_old + 1} is missing; verify the chain before pruning")
        deleted = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq <= last_old))
        detail: dict[str, Any] = {
            "first_kept_seq": first_kept.seq,
            "cut_hash": first_kept.prev_hash,
            "deleted": int(deleted or 0),
            "older_than": rfc3339(older_than),
        }
        if behind:
            detail["forced_past"] = [{"destination": name, "sent_to_seq": seq} for name, seq in behind]
        pruned = append(PRUNED_EVENT, session=session, outcome="ok", detail=detail, **fields)
        session.execute(delete(AuditEvent).where(AuditEvent.seq <= last_old))
        return pruned
