"""The DESIGN.md ``<run>`` shape: one view of a run for the API, the stream's end event and the run page."""

from __future__ import annotations

from typing import Any

from gateway import approvals
from gateway.access import policy
from gateway.approvals.store import ApprovalSummary
from gateway.db.models import Run
from gateway.runs.store import iso, output_text

_LOOK_UP = object()  # run_view's default: read the run's approval side itself


def run_view(
    run: Run, viewer: Any, *, cached: bool = False, include_output: bool = True, approval: Any = _LOOK_UP
) -> dict[str, Any]:
    """The ``<run>`` shape for ``viewer``; a shared cached result hides who ran it, from where, with what.

    ``approval``: the run's ``ApprovalSummary`` (or None) when the caller read it already
    (``approvals.summaries`` for a page of runs); otherwise it is read here.
    """
    details = policy.sees_run_details(viewer, run)
    view: dict[str, Any] = {
        "id": run.id,
        "command": run.command,
        "params": run.params if details else None,
        "status": run.status,
        "exit_code": run.exit_code,
        "user": run.username if details else None,
        "source_ip": run.source_ip if details else None,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_ms": run.duration_ms,
        "output_bytes": run.output_bytes,
        "output_truncated": run.output_truncated,
        "output_sha256": run.output_sha256,
        "result": run.result,
        "error": run.error,
        "cached": cached,
        "approval": None,
    }
    if approval is _LOOK_UP:
        approval = approvals.summary(run.id) if details else None
    if approval is not None and details:
        view["approval"] = approval_view(approval, run, viewer)
    if include_output:
        view["output"] = output_text(run.id)
    return view


def approval_view(summary: ApprovalSummary, run: Run, viewer: Any) -> dict[str, Any]:
    """A run's approval side as the API shows it: its state, the decisions so far, and what the viewer may do."""
    mine = summary.decided_by(getattr(viewer, "id", None))
    waiting = run.status == policy.PENDING_APPROVAL and summary.state == "pending"
    return {
        "state": summary.state,
        "min_approvals": summary.min_approvals,
        "approvals": summary.approvals,
        "expires_at": iso(summary.expires_at),
        "decided_at": iso(summary.decided_at),
        "decisions": [
            {"user": d.user, "decision": d.decision, "comment": d.comment, "at": iso(d.at)} for d in summary.decisions
        ],
        "can_decide": waiting and mine is None and policy.decision_refusal(viewer, run, "approve", None) is None,
        "can_withdraw": waiting and policy.decision_refusal(viewer, run, "withdraw", None) is None,
    }
