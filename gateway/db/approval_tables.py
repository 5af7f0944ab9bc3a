"""The approval tables: a request waiting for a second person, and each approver's decision.

Kept apart from ``models`` (the other tables) so that module stays readable; both
register on the same metadata, and ``migrations/env.py`` imports both.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db.models import UTCDateTime
from gateway.platform.extensions import Model
from gateway.platform.timeutil import utcnow


class ApprovalRequest(Model):
    """The approval side of a run that needs one (its run row is in ``pending_approval`` while ``state`` is pending).

    ``sealed_secrets`` holds the request's secret values, sealed (``gateway.platform.secretbox``),
    until the run starts or the request ends: then it is wiped in that same commit.
    """

    __tablename__ = "approval_requests"
    __table_args__ = (Index("ix_approval_requests_state_expires", "state", "expires_at"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    command: Mapped[str] = mapped_column(String(100), index=True)
    min_approvals: Mapped[int] = mapped_column(Integer)
    # pending | approved | denied | expired | withdrawn (approved: the run was started, or failed to start)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # by the database clock
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sealed_secrets: Mapped[str | None] = mapped_column(Text)


class ApprovalDecision(Model):
    """One approver's approval or denial of a request; the key makes each approver count once."""

    __tablename__ = "approval_decisions"

    run_id: Mapped[str] = mapped_column(ForeignKey("approval_requests.run_id", ondelete="CASCADE"), primary_key=True)
    # No foreign key: the decision stays on record (as its ledger event does) whatever becomes of the account.
    approver_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    approver_name: Mapped[str] = mapped_column(String(150))
    decision: Mapped[str] = mapped_column(String(8))  # approved | denied
    comment: Mapped[str] = mapped_column(Text, default="")
    source_ip: Mapped[str | None] = mapped_column(String(45))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
