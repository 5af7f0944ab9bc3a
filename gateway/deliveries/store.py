"""Every statement on the outbox (``deliveries``): the insert in a cause's unit, the claim, the outcome, the admin's.

The claim and the outcome are two short write units with the send between
them, outside any transaction.  Times come from the database clock where
there is one (PostgreSQL: every replica reads the same), so a lease means the
same to all of them.  An outcome is recorded only by the worker still holding
the lease (the ``claim_id`` its claim set): one whose lease ran out, and was taken over,
or whose delivery an admin retried meanwhile, records nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from gateway import audit
from gateway.db import dialect
from gateway.db.outbox import Delivery
from gateway.db.prepared import Prepared
from gateway.db.units import write_connection, write_transaction
from gateway.platform import notify
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc, utcnow

_D = Delivery.__table__
PENDING, FAILED, DELIVERED, DEAD = "pending", "failed", "delivered", "dead"
WAITING = (PENDING, FAILED)  # what a worker may claim once due
SYSTEM_ACTOR = {"id": None, "name": "system:deliveries"}

# Inserted with the cause (on SQLite, one prepared statement; PostgreSQL stamps its own clock).
_INSERT = Prepared(insert(_D))
_INSERT_BY_DATABASE_CLOCK = insert(_D).values(created_at=dialect.server_clock(), next_attempt_at=dialect.server_clock())


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds until ``locked_until``: what its send needs, and how to record the outcome."""

    id: str
    destination: str
    kind: str
    event: str
    run_id: str | None
    payload: Mapping[str, Any]
    attempts: int  # this attempt's number (1 for the first)
    claim_id: str
    locked_until: datetime
    failed_before: bool  # a failure was recorded earlier (delivery.failed is written once)


def insert_rows(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """New deliveries (every column but the times), due now, inside the cause's transaction."""
    if dialect.has_server_clock(connection):
        connection.execute(_INSERT_BY_DATABASE_CLOCK, list(rows))
        return
    now = utcnow()  # SQLite's clock is this host's, the only host writing the file
    _INSERT.execute_many(connection, [{**row, "created_at": now, "next_attempt_at": now} for row in rows])


# The statements of every claim and outcome, built once (prepared on SQLite's cursor: gateway.db.prepared).
_WAITING_BINDS: list[BindParameter[str]] = [bindparam("_w0", PENDING), bindparam("_w1", FAILED)]
_DUE = Prepared(
    select(_D.c.id)
    .where(_D.c.status.in_(_WAITING_BINDS), _D.c.next_attempt_at <= bindparam("_now"))
    .order_by(_D.c.next_attempt_at)
    .limit(bindparam("_one", 1, literal_execute=False))
    .with_for_update(skip_locked=True)
)
_TAKE = Prepared(
    update(_D)
    .where(_D.c.id == bindparam("_id"))
    .values(attempts=_D.c.attempts + 1, locked_until=bindparam("_until"), next_attempt_at=bindparam("_until"),
            claim_id=bindparam("_claim"), last_attempt_at=bindparam("_now"))
    .returning(_D.c.destination, _D.c.kind, _D.c.event, _D.c.run_id, _D.c.payload, _D.c.attempts,
               _D.c.first_failed_at)
)  # fmt: skip
_HELD = (_D.c.id == bindparam("_id"), _D.c.claim_id == bindparam("_claim"))
_DELIVERED = Prepared(
    update(_D).where(*_HELD).values(
        status=DELIVERED, delivered_at=bindparam("_now"), last_error=None, last_status=bindparam("_status"),
        locked_until=None, claim_id=None,
    )
)  # fmt: skip
_NOT_DELIVERED = Prepared(
    update(_D).where(*_HELD).values(
        status=bindparam("_state"), next_attempt_at=bindparam("_next"), last_error=bindparam("_reason"),
        last_status=bindparam("_status"), locked_until=None, claim_id=None,
        first_failed_at=func.coalesce(_D.c.first_failed_at, bindparam("_now")),
    )
)  # fmt: skip
_NEXT_DUE = Prepared(select(func.min(_D.c.next_attempt_at)).where(_D.c.status.in_(_WAITING_BINDS)))


def claim(lease_seconds: float) -> Claimed | None:
    """Take the oldest due delivery for ``lease_seconds`` (attempt counted now); None when nothing is due.

    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: replicas claiming at the same
    instant take different rows instead of queueing on one; on SQLite the
    unit's ``BEGIN IMMEDIATE`` holds the database's only write lock.
    """
    with write_connection() as tx:
        now = dialect.database_now(tx)
        due = _DUE.scalar(tx, {"_now": now})
        if due is None:
            return None
        claim_id = secrets.token_hex(16)
        until = now + timedelta(seconds=lease_seconds)
        row = _TAKE.first(tx, {"_id": due, "_until": until, "_claim": claim_id, "_now": now})
    if row is None:  # not reachable: the row was just selected under the write lock (or its row lock)
        return None
    return Claimed(
        id=due, destination=row["destination"], kind=row["kind"], event=row["event"], run_id=row["run_id"],
        payload=row["payload"], attempts=row["attempts"], claim_id=claim_id, locked_until=until,
        failed_before=row["first_failed_at"] is not None,
    )  # fmt: skip


def record(
    claimed: Claimed, ok: bool, reason: str | None, status: int | None, *, dead: bool, retry_in: float
) -> str | None:
    """The attempt's outcome, with ``delivery.failed`` (first failure) and ``delivery.dead`` in the same unit.

    Returns the new status, or None when this worker no longer held the lease (nothing written).
    """
    state = DELIVERED if ok else DEAD if dead else FAILED
    with write_connection() as tx:
        now = dialect.database_now(tx)
        held = {"_id": claimed.id, "_claim": claimed.claim_id, "_now": now, "_status": status}
        if ok:
            matched = _DELIVERED.execute(tx, held)
        else:
            next_at = now if dead else now + timedelta(seconds=retry_in)
            matched = _NOT_DELIVERED.execute(tx, {**held, "_state": state, "_next": next_at, "_reason": reason})
        if matched == 0:
            return None
        if not ok:
            detail = _detail(claimed, reason, status)
            if not claimed.failed_before:
                _append(tx, "delivery.failed", claimed, reason, detail)
            if dead:
                _append(tx, "delivery.dead", claimed, reason, detail)
    return state


def _detail(claimed: Claimed, reason: str | None, status: int | None) -> dict[str, Any]:
    return {
        "delivery": claimed.id, "destination": claimed.destination, "kind": claimed.kind, "event": claimed.event,
        "attempts": claimed.attempts, "reason": reason, "status": status,
    }  # fmt: skip


def _append(tx: Connection, event: str, claimed: Claimed, reason: str | None, detail: dict[str, Any]) -> None:
    audit.append(
        event, session=tx, actor=SYSTEM_ACTOR, command=command_of(claimed.payload), run_id=claimed.run_id,
        outcome=reason, detail=detail,
    )  # fmt: skip


def command_of(payload: Any) -> str | None:
    """The command a delivery is about (its payload's run), for the ledger's ``command`` column."""
    run = payload.get("run") if isinstance(payload, Mapping) else None
    command = run.get("command") if isinstance(run, Mapping) else None
    return command if isinstance(command, str) else None


def seconds_until_due() -> float | None:
    """How long until the next waiting delivery is due (0 or less: now); None when none waits.

    A read, with no write lock: a worker asks this before it claims, so a wake-up with nothing
    due (or a pass that has sent everything) costs no write transaction.
    """
    with db.engine.connect() as connection:
        due = _NEXT_DUE.scalar(connection)
        if due is None:
            return None
        now = dialect.database_now(connection)
    return (as_utc(due) - now).total_seconds()


# --- what the admin page shows and does ------------------------------------------------------


def unfinished(limit: int = 200) -> list[Any]:
    """Deliveries not delivered (pending, failed, dead), newest first; no payload (it quotes output)."""
    statement = (
        select(
            _D.c.id, _D.c.destination, _D.c.kind, _D.c.event, _D.c.run_id, _D.c.status, _D.c.attempts,
            _D.c.created_at, _D.c.next_attempt_at, _D.c.locked_until, _D.c.last_attempt_at, _D.c.last_error,
            _D.c.last_status,
        )
        .where(_D.c.status != DELIVERED)
        .order_by(_D.c.created_at.desc(), _D.c.id)
        .limit(limit)
    )  # fmt: skip
    return list(db.session.execute(statement))


def counts() -> dict[str, int]:
    """Deliveries by status (all time: rows leave with their run, ``runs prune``)."""
    rows = db.session.execute(select(_D.c.status, func.count()).group_by(_D.c.status))
    return {status: int(number) for status, number in rows}


def retry(delivery_id: str, **fields: Any) -> str:
    """An admin's retry: due now with its attempts reset (audited ``admin.delivery_retried``).

    Returns ``retried``, or why not: ``not_found``, ``delivered``, ``sending`` (a worker holds it now).
    """
    with write_transaction() as tx:
        now = dialect.database_now(tx)
        row = tx.execute(select(_D).where(_D.c.id == delivery_id)).first()
        if row is None:
            return "not_found"
        if row.status == DELIVERED:
            return "delivered"
        if row.locked_until is not None and as_utc(row.locked_until) > now:
            return "sending"
        tx.execute(
            update(_D)
            .where(_D.c.id == delivery_id)
            .values(status=PENDING, attempts=0, next_attempt_at=now, locked_until=None, claim_id=None)
        )
        audit.append(
            "admin.delivery_retried", session=tx, run_id=row.run_id, outcome="ok", command=command_of(row.payload),
            detail={"delivery": row.id, "destination": row.destination, "kind": row.kind, "event": row.event,
                    "was": row.status, "attempts": row.attempts},
            **fields,
        )  # fmt: skip
        notify.publish(row.id, notify.DELIVERY, tx)  # every replica's worker looks, at commit
    return "retried"
