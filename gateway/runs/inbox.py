"""The approvals lists (``/approvals``, ``GET /api/v1/approvals``): what waits for me, what I asked for.

Both are run lists (``store.list_runs``: newest first, keyset paging, no run of a
command fenced from the viewer's address): ``waiting`` holds the pending requests
``policy.awaiting_decision`` says wait for this viewer's decision; ``requested``
the viewer's own runs that went through approval, in every state.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import select

from gateway.access import policy
from gateway.db.approval_tables import ApprovalRequest
from gateway.db.models import Run
from gateway.runs import store

Scope = Literal["waiting", "requested"]
SCOPES: tuple[Scope, ...] = ("waiting", "requested")


def approval_runs(
    viewer: Any, address: str | None, scope: Scope, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[Run], str | None]:
    """A page of the list ``scope`` for ``viewer`` and its next cursor; ValueError for a malformed cursor."""
    if scope == "waiting":
        return store.list_runs(
            owner_id=None, address=address, limit=limit, cursor=cursor,
            where=policy.awaiting_decision(viewer, address),
        )  # fmt: skip
    requested = Run.id.in_(select(ApprovalRequest.run_id).where(ApprovalRequest.run_id == Run.id))
    return store.list_runs(owner_id=int(viewer.id), address=address, limit=limit, cursor=cursor, where=requested)
