"""Approvals: the side of a run that waits for a second person (DESIGN.md, "Approvals").

Owns the approval tables (``gateway.db.approval_tables``) and what is kept in them:

- ``store``: every statement on them (a request, its decisions, the lock that orders
  decisions, withdrawal and expiry of one request, the wipe of its secrets, the expiry query);
- ``vault``: the request's secret values, sealed (``gateway.platform.secretbox``) under a purpose of their own;
- ``comments``: what an approver's comment may be (it goes into the ledger);
- ``readiness``: approver groups the database does not know are a readiness warning.

The flow itself (request, approve, deny, withdraw, expire, and the start at the last
approval) is the runs engine's (``gateway.runs.pending``, ``gateway.runs.decisions``):
it starts runs; who may approve or see is ``gateway.access.policy``'s.  May import
``gateway.catalogue``, ``gateway.db`` and ``gateway.platform``; never runs, access or the
delivery layer.
"""

from __future__ import annotations

from gateway.approvals.comments import CommentError, check_comment
from gateway.approvals.readiness import init_app
from gateway.approvals.store import ApprovalSummary, summaries, summary
from gateway.approvals.vault import open_secrets, seal_secrets

__all__ = [
    "ApprovalSummary",
    "CommentError",
    "check_comment",
    "init_app",
    "open_secrets",
    "seal_secrets",
    "summaries",
    "summary",
]
