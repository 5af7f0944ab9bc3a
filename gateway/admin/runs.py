"""/admin/runs: every user's runs, filterable by command, status and user, with cancel for live ones.

Paging is the engine's keyset cursor (``runs.list_runs``); filtering by user is its ``owner_id``.
"""

from __future__ import annotations

from flask import abort, flash, render_template, request
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from gateway import runs
from gateway.access import policy
from gateway.admin.blueprint import bp
from gateway.admin.shared import back
from gateway.catalogue import switches as command_switches
from gateway.db.models import Run
from gateway.identity import accounts
from gateway.platform.addresses import client_address
from gateway.platform.phrases import on_page
from gateway.runs.callers import current_caller
from gateway.web.shared import STATUS_LABELS, me, refuse_cursor, status_filter

PAGE_SIZE = 50


def _owner(username: str | None) -> tuple[bool, int | None]:
    """(found, owner_id): the runs the policy lets this admin list (everyone's), or one user's;
    (False, None) for an unknown name."""
    if username is None:
        return True, policy.listable_owner(me())
    user = accounts.find_user(username)
    if user is None:
        flash(_("No user %(name)s.", name=repr(username)))
        return False, None
    return True, user.id


@bp.route("/runs", endpoint="runs")
def runs_list() -> str:
    command = request.args.get("command", "").strip() or None
    status = status_filter(request.args.get("status", "").strip() or None)
    username = request.args.get("user", "").strip() or None
    cursor = request.args.get("cursor", "").strip() or None
    found, owner_id = _owner(username)
    page: list[Run] = []
    next_cursor: str | None = None
    if found:
        try:
            page, next_cursor = runs.list_runs(
                owner_id=owner_id, address=client_address(), command=command, status=status, limit=PAGE_SIZE,
                cursor=cursor,
            )  # fmt: skip
        except ValueError:
            refuse_cursor("cursor")
    args = {k: v for k, v in {"command": command, "status": status, "user": username}.items() if v}
    catalogue = command_switches.current_catalogue()
    return render_template(
        "admin/runs.html",
        runs=page,
        next_cursor=next_cursor,
        filters=args,
        command_names=sorted(catalogue.commands),
        titles={name: c.title for name, c in catalogue.commands.items()},
        statuses=STATUS_LABELS,
        live=runs.LIVE,
        first_page=cursor is None,
    )


@bp.route("/runs/<run_id:run_id>/cancel", methods=["POST"])
def cancel_run(run_id: str) -> Response:
    try:
        runs.cancel(run_id, current_caller())
    except runs.RunRejected as exc:
        if exc.status == 404:
            abort(404)
        return back("admin.runs", on_page(exc.message))
    return back("admin.runs", _("Cancellation requested. The command is being stopped."))
