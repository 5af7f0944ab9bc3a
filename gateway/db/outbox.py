"""The notifications' outbox table, ``deliveries`` (``gateway.deliveries`` writes it).

Apart from ``models`` (which keeps the other tables) to keep each module small; the
Alembic environment imports both, so ``manage.py db check`` sees every table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db.models import UTCDateTime
from gateway.platform.extensions import Model


class Delivery(Model):
    """One notification on its way out: the transactional outbox (``gateway.deliveries``).

    Inserted in the same transaction as its cause (a run's end), so nothing is
    sent for a cause that rolled back and nothing is lost when the receiver is
    down.  A worker claims it by setting ``locked_until`` (and ``next_attempt_at``
    with it: a lease that runs out makes the row due again, for any replica).
    ``status``: ``pending`` (not tried yet), ``failed`` (tried, retrying),
    ``delivered``, ``dead`` (``DELIVERY_MAX_ATTEMPTS`` used up; an admin may retry).
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_status_due", "status", "next_attempt_at"),
        Index("ix_deliveries_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    destination: Mapped[str] = mapped_column(String(100))  # a notification's name in the catalogue
    kind: Mapped[str] = mapped_column(String(16))  # webhook | email | slack, as when it was enqueued
    event: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    payload: Mapped[Any] = mapped_column(JSON)  # what the message says: no secret, no full output
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_id: Mapped[str | None] = mapped_column(String(32))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(32))  # a reason from a closed set, never a message
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's HTTP (or SMTP) status
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
