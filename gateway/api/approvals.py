"""``POST /api/v1/runs/<id>/approve|deny|withdraw`` and ``GET /api/v1/approvals`` (DESIGN.md, Approvals).

The decisions go through ``runs.decide`` (the policy decides who may, the
ledger records each step or refusal); the list is ``runs.approval_runs``:
``scope=waiting`` (the default) holds the requests waiting for the caller's
decision, ``scope=requested`` the caller's own requests, each a ``<run>``
without output with its ``approval`` side.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Response

from gateway import approvals, runs
from gateway.access import policy
from gateway.api.body import json_object_body
from gateway.api.errors import ApiError
from gateway.api.queryargs import int_arg, text_arg
from gateway.api.views import _json, _user, bp
from gateway.platform.addresses import client_address
from gateway.runs.callers import current_caller

DECISION_FIELDS = frozenset({"comment"})


def _decide(run_id: str, action: policy.Decision) -> Response:
    try:
        comment = json_object_body(DECISION_FIELDS).get("comment")
    except ApiError as exc:  # a refusal of what the caller sent: on record like any other
        refusal = runs.refuse_decision(current_caller(), run_id, action, exc.status, exc.code, exc.message, exc.details)
        raise ApiError.from_rejection(refusal) from None
    try:
        run = runs.decide(run_id, current_caller(), action, comment)
    except runs.RunRejected as exc:
        raise ApiError.from_rejection(exc) from None
    return _json(runs.run_view(run, _user()))


@bp.post("/runs/<run_id:run_id>/approve")
def approve_run(run_id: str) -> Response:
    return _decide(run_id, "approve")


@bp.post("/runs/<run_id:run_id>/deny")
def deny_run(run_id: str) -> Response:
    return _decide(run_id, "deny")


@bp.post("/runs/<run_id:run_id>/withdraw")
def withdraw_run(run_id: str) -> Response:
    return _decide(run_id, "withdraw")


@bp.get("/approvals")
def list_approvals() -> Response:
    scope = next((known for known in runs.SCOPES if known == (text_arg("scope") or "waiting")), None)
    if scope is None:
        raise ApiError.invalid("scope", "must be one of " + ", ".join(runs.SCOPES))
    limit = int_arg("limit", 50, 1, 500) or 50
    cursor = text_arg("cursor")
    user = _user()
    try:
        page, next_cursor = runs.approval_runs(user, client_address(), scope, limit=limit, cursor=cursor)
    except ValueError:
        raise ApiError.invalid("cursor", "is not a cursor this API returned") from None
    found = approvals.summaries(run.id for run in page)
    items: list[dict[str, Any]] = [
        runs.run_view(run, user, include_output=False, approval=found.get(run.id)) for run in page
    ]
    return _json({"items": items, "next_cursor": next_cursor})
