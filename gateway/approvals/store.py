"""Every statement on the approval tables.

Functions that take ``tx`` run inside the caller's write unit, which also
carries the run row's change and its ledger events; the reads open nothing of
their own (the request's session).  ``hold`` is what orders everything that
may end one request (each decision, a withdrawal, the expiry sweep): a
conditional UPDATE of the pending request, which PostgreSQL keeps locked until
the transaction ends and SQLite's single writer orders anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from gateway.db.approval_tables import ApprovalDecision, ApprovalRequest
from gateway.db.models import Group, GroupMember, User
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc

_REQUESTS = ApprovalRequest.__table__
_DECISIONS = ApprovalDecision.__table__
PENDING = "pending"


@dataclass(frozen=True)
class Decision:
    user: str
    decision: str  # approved | denied
    comment: str
    at: datetime
    user_id: int


@dataclass(frozen=True)
class ApprovalSummary:
    """A request as pages and the API show it (who decided, when and why)."""

    state: str
    min_approvals: int
    expires_at: datetime
    decided_at: datetime | None
    decisions: list[Decision] = field(default_factory=list)

    @property
    def approvals(self) -> int:
        return sum(1 for decision in self.decisions if decision.decision == "approved")

    def decided_by(self, user_id: Any) -> Decision | None:
        return next((decision for decision in self.decisions if decision.user_id == user_id), None)


# --- inside a write unit ----------------------------------------------------------------------


def open_request(tx: Connection, values: Mapping[str, Any]) -> None:
    """Record a new pending request (its run row is written in the same unit)."""
    tx.execute(insert(_REQUESTS), [{"state": PENDING, "decided_at": None, **values}])


_HOLD = (
    update(_REQUESTS)
    .where(_REQUESTS.c.run_id == bindparam("request"), _REQUESTS.c.state == PENDING)
    .values(state=_REQUESTS.c.state)
    .returning(*_REQUESTS.c)
)


def hold(tx: Connection, run_id: str) -> Mapping[str, Any] | None:
    """The pending request of ``run_id``, held until ``tx`` ends; None when it is not (or no longer) pending."""
    row = tx.execute(_HOLD, {"request": run_id}).first()
    return None if row is None else dict(row._mapping)


def decision_of(tx: Connection, run_id: str, approver_id: int) -> str | None:
    """What this approver already decided on the request (``approved`` / ``denied``), or None."""
    return tx.scalar(
        select(_DECISIONS.c.decision).where(_DECISIONS.c.run_id == run_id, _DECISIONS.c.approver_id == approver_id)
    )


def add_decision(tx: Connection, values: Mapping[str, Any]) -> None:
    tx.execute(insert(_DECISIONS), [dict(values)])


def counted_approvers(tx: Connection, run_id: str, groups: Sequence[str]) -> list[str]:
    """Who approved the request and is still an active member of one of ``groups``, in the order they approved.

    An approval counts while its giver is still an approver: one removed from the
    groups (or disabled) since no longer counts towards the start.
    """
    members = (
        select(GroupMember.user_id)
        .join(Group, Group.id == GroupMember.group_id)
        .join(User, User.id == GroupMember.user_id)
        .where(Group.name.in_(list(groups)), User.active.is_(True))
    )
    rows = tx.execute(
        select(_DECISIONS.c.approver_name)
        .where(
            _DECISIONS.c.run_id == run_id,
            _DECISIONS.c.decision == "approved",
            _DECISIONS.c.approver_id.in_(members),
        )
        .order_by(_DECISIONS.c.decided_at, _DECISIONS.c.approver_name)
    )
    return [row[0] for row in rows]


def close(tx: Connection, run_id: str, state: str, at: datetime) -> None:
    """End the request in ``state``; its sealed secrets are wiped in the same commit."""
    tx.execute(
        update(_REQUESTS).where(_REQUESTS.c.run_id == run_id).values(state=state, decided_at=at, sealed_secrets=None)
    )


def expired(tx: Connection, now: datetime, limit: int = 200) -> list[str]:
    """Run ids of pending requests whose time ran out before ``now`` (the database clock)."""
    rows = tx.execute(
        select(_REQUESTS.c.run_id)
        .where(_REQUESTS.c.state == PENDING, _REQUESTS.c.expires_at < now)
        .order_by(_REQUESTS.c.expires_at)
        .limit(limit)
    )
    return [row[0] for row in rows]


# --- reads ------------------------------------------------------------------------------------


def summaries(run_ids: Iterable[str]) -> dict[str, ApprovalSummary]:
    """The approval side of each run that has one, by run id (two queries, whatever the number of runs)."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    requests = db.session.execute(select(_REQUESTS).where(_REQUESTS.c.run_id.in_(ids))).all()
    if not requests:
        return {}
    found = [row.run_id for row in requests]
    decided: dict[str, list[Decision]] = {run_id: [] for run_id in found}
    rows = db.session.execute(
        select(_DECISIONS).where(_DECISIONS.c.run_id.in_(found)).order_by(_DECISIONS.c.decided_at)
    ).all()
    for row in rows:
        decided[row.run_id].append(
            Decision(row.approver_name, row.decision, row.comment, as_utc(row.decided_at), row.approver_id)
        )
    return {
        row.run_id: ApprovalSummary(
            state=row.state,
            min_approvals=row.min_approvals,
            expires_at=as_utc(row.expires_at),
            decided_at=None if row.decided_at is None else as_utc(row.decided_at),
            decisions=decided[row.run_id],
        )
        for row in requests
    }


def summary(run_id: str) -> ApprovalSummary | None:
    return summaries([run_id]).get(run_id)


def sealed_secrets(tx: Connection, run_id: str) -> str | None:
    """The request's sealed secret values (None: none, or wiped)."""
    return tx.scalar(select(_REQUESTS.c.sealed_secrets).where(_REQUESTS.c.run_id == run_id))
