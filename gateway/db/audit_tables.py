"""The audit room's tables: the ledger and the forwarding cursors (``gateway.db.models`` re-exports both)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db.columns import UTCDateTime
from gateway.platform.extensions import Model


class AuditEvent(Model):
    """One row of the append-only, HMAC-chained ledger. Written only by ``gateway.audit``."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_event_seq", "event", "seq"),
        Index("ix_audit_events_actor_seq", "actor_name", "seq"),
        Index("ix_audit_events_command_seq", "command", "seq"),
        Index("ix_audit_events_outcome_seq", "outcome", "seq"),
        Index("ix_audit_events_source_ip_seq", "source_ip", "seq"),
        Index("ix_audit_events_run_id", "run_id"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    event: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str | None] = mapped_column(String(150))
    source_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    command: Mapped[str | None] = mapped_column(String(100))
    run_id: Mapped[str | None] = mapped_column(String(36))
    params: Mapped[Any | None] = mapped_column(JSON)
    outcome: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[Any | None] = mapped_column(JSON)
    key_id: Mapped[str] = mapped_column(String(32))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditForwardCursor(Model):
    """How far audit forwarding to one destination has come, and which process forwards it now (its lease).

    ``last_seq`` is the newest event the destination acknowledged (``last_hash`` its
    hash, so the next event's ``prev_hash`` can be checked); the lease is taken and
    renewed by a conditional UPDATE against the database clock, so one forwarder per
    destination runs at a time across replicas.  Written only by ``gateway.audit.forwarding``.
    """

    __tablename__ = "audit_forward_cursors"

    destination: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    forwarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(16))
    lease_holder: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
