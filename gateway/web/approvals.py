"""``/approvals`` (what waits for my decision, what I asked for) and the decision forms of the run page.

The forms post ``comment`` to ``/runs/<id>/approve``, ``/deny`` or ``/withdraw``;
``runs.decide`` asks the policy who may and records each step or refusal.  The
page's lists are ``runs.approval_runs``, the same the API answers, and page with the
API's cursor: ``?waiting_cursor=`` and ``?requested_cursor=`` move one list each and
every link keeps the other list's, so each list pages on its own without JavaScript.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from gateway import approvals, runs
from gateway.access import policy
from gateway.catalogue import switches as command_switches
from gateway.platform.addresses import client_address
from gateway.platform.phrases import on_page
from gateway.runs.callers import current_caller
from gateway.web.blueprint import bp
from gateway.web.shared import STATUS_LABELS, me, refuse_cursor

LIST_SIZE = 50
DONE = {
    "approve": lazy_gettext("Approved: your approval is recorded."),
    "deny": lazy_gettext("Denied: the request has ended."),
    "withdraw": lazy_gettext("Withdrawn: the request has ended."),
}


def cursor_arg(field: str) -> str | None:
    """A list's cursor as the query string carries it (named literally at each call: the route sweep reads them)."""
    return request.args.get(field, "").strip() or None


def _list(viewer: Any, address: str | None, scope: runs.Scope, field: str, cursor: str | None) -> dict[str, Any]:
    """One list's page from its own cursor: the runs, the next cursor and whether this is the newest page."""
    try:
        page, next_cursor = runs.approval_runs(viewer, address, scope, limit=LIST_SIZE, cursor=cursor)
    except ValueError:
        refuse_cursor(field)
    return {"runs": page, "next_cursor": next_cursor, "cursor": cursor, "first_page": cursor is None}


@bp.route("/approvals")
def approvals_page() -> str:
    viewer, address = me(), client_address()
    waiting = _list(viewer, address, "waiting", "waiting_cursor", cursor_arg("waiting_cursor"))
    requested = _list(viewer, address, "requested", "requested_cursor", cursor_arg("requested_cursor"))
    found = approvals.summaries(run.id for run in [*waiting["runs"], *requested["runs"]])
    return render_template(
        "approvals.html",
        waiting=waiting,
        requested=requested,
        approval=found,
        titles={name: c.title for name, c in command_switches.current_catalogue().commands.items()},
        statuses=STATUS_LABELS,
    )


def _decide(run_id: str, action: policy.Decision) -> Response:
    try:
        run = runs.decide(run_id, current_caller(), action, request.form.get("comment", ""))
    except runs.RunRejected as exc:
        if exc.status in (403, 404):  # the page offers no such button: a crafted request gets the bare answer
            abort(exc.status)
        flash(on_page(exc.message))
    else:
        message = str(DONE[action])
        if action == "approve" and run.status == "failed":
            message = _("Approved, but the run could not start: see why below.")
        elif action == "approve" and run.status != runs.PENDING_APPROVAL:
            message = _("Approved: the run has started.")
        flash(message)
    return redirect(url_for("web.run_page", run_id=run_id), 303)


@bp.route("/runs/<run_id:run_id>/approve", methods=["POST"])
def run_approve(run_id: str) -> Response:
    return _decide(run_id, "approve")


@bp.route("/runs/<run_id:run_id>/deny", methods=["POST"])
def run_deny(run_id: str) -> Response:
    return _decide(run_id, "deny")


@bp.route("/runs/<run_id:run_id>/withdraw", methods=["POST"])
def run_withdraw(run_id: str) -> Response:
    return _decide(run_id, "withdraw")
