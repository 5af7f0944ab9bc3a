"""Where each destination stands: its cursor, its lag behind the ledger's head, whether it is failing.

``manage.py audit forward-status`` shows every cursor in the database (a
destination no longer in ``AUDIT_FORWARD`` still holds prunes back until it is
forgotten); ``/metrics`` reports ``gateway_audit_forward_lag_events`` for the
configured destinations only, so a label value is always an operator's name.
Both read the database, so every replica answers the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway.audit.forwarding import cursors
from gateway.audit.ledger import chain_head
from gateway.platform.extensions import db

log = logging.getLogger("gateway.audit.forward")


@dataclass(frozen=True)
class DestinationStatus:
    name: str
    kind: str | None  # http or syslog; None: not in AUDIT_FORWARD (a leftover cursor)
    last_seq: int | None  # None: configured, but no forwarder has started yet
    head_seq: int
    forwarded_at: datetime | None = None
    failing_since: datetime | None = None
    last_error: str | None = None
    lease_holder: str | None = None
    lease_expires_at: datetime | None = None

    @property
    def lag(self) -> int | None:
        return None if self.last_seq is None else max(0, self.head_seq - self.last_seq)

    @property
    def state(self) -> str:
        if self.kind is None:
            return "not configured"
        if self.last_seq is None:
            return "not started"
        if self.last_error:
            return f"failing ({self.last_error})"
        return "ok"


def statuses(session: Session) -> list[DestinationStatus]:
    """Every configured destination and every stored cursor, by name."""
    configured = {destination.name: destination.kind for destination in current_app.config["AUDIT_FORWARD"]}
    head_seq, _ = chain_head(session.connection())
    stored = {row.destination: row for row in cursors.all_cursors(session)}
    found = []
    for name in sorted(set(configured) | set(stored)):
        row = stored.get(name)
        if row is None:
            found.append(DestinationStatus(name=name, kind=configured[name], last_seq=None, head_seq=head_seq))
            continue
        found.append(
            DestinationStatus(
                name=name,
                kind=configured.get(name),
                last_seq=int(row.last_seq),
                head_seq=head_seq,
                forwarded_at=row.forwarded_at,
                failing_since=row.failing_since,
                last_error=row.last_error,
                lease_holder=row.lease_holder,
                lease_expires_at=row.lease_expires_at,
            )
        )
    return found


def lag_by_destination() -> dict[str, float]:
    """Configured destination -> events not yet acknowledged (for ``/metrics``; needs an app context).

    A database error is logged and answered with nothing: the scrape must not fail.
    """
    if not current_app.config.get("AUDIT_FORWARD"):
        return {}
    try:
        with Session(db.engine) as session:
            return {
                status.name: float(status.lag)
                for status in statuses(session)
                if status.kind is not None and status.lag is not None
            }
    except SQLAlchemyError:
        log.warning("could not read the audit forwarding cursors", exc_info=True)
        return {}
