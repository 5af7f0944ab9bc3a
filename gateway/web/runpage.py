"""The run page (state, output, result table), cancel, and the CSV download.

The page is rendered from the database, so it is complete without
JavaScript (reload for more while a run is live); ``static/run.js`` then
follows the API's event stream and appends only chunks newer than the last
one rendered here, so nothing is shown twice.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from gateway import runs
from gateway.access import policy
from gateway.catalogue import switches as command_switches
from gateway.db.models import Run
from gateway.platform.addresses import client_address
from gateway.platform.timeutil import as_utc, utcnow
from gateway.runs.callers import current_caller
from gateway.web.blueprint import bp
from gateway.web.paramform import again_values
from gateway.web.shared import STATUS_LABELS, duration, me

MAX_RENDERED_CHUNKS = 20_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def rendered_chunks(run_id: str) -> list[Any]:
    """Every stored output chunk, in arrival order (bounded: output is capped by max_output_bytes anyway)."""
    chunks: list[Any] = []
    after = 0
    while len(chunks) < MAX_RENDERED_CHUNKS:
        batch = runs.output_chunks(run_id, after_seq=after, limit=1000)
        if not batch:
            break
        chunks.extend(batch)
        after = batch[-1].seq
    return chunks


def stream_available() -> bool:
    """Whether the API's event stream exists in this app (the page then follows it live)."""
    from flask import current_app

    rules = current_app.url_map.iter_rules()
    return any(rule.rule.startswith("/api/v1/runs/<") and rule.rule.endswith(">/stream") for rule in rules)


@bp.route("/runs/<run_id:run_id>")
def run_page(run_id: str) -> str:
    viewer, address = me(), client_address()
    run = policy.run_for(viewer, run_id, "view", address)
    view = runs.run_view(run, viewer, cached=request.args.get("cached") == "1", include_output=False)
    approval = view["approval"]
    command = command_switches.current_catalogue().get(run.command)
    chunks = rendered_chunks(run.id)
    live = run.status in runs.LIVE
    return render_template(
        "run.html",
        run=run,
        view=view,
        command=command,
        chunks=chunks,
        last_seq=chunks[-1].seq if chunks else 0,
        live=live,
        elapsed=duration(int((utcnow() - as_utc(run.started_at or run.created_at)).total_seconds() * 1000)),
        status_label=STATUS_LABELS.get(run.status, run.status),
        can_cancel=live and policy.allows_run(viewer, run, "cancel", address),
        approval=approval,
        can_decide=bool(approval and approval["can_decide"]),
        can_withdraw=bool(approval and approval["can_withdraw"]),
        approvers=command.approval.approvers if command is not None and command.approval is not None else [],
        can_run_again=policy.check_run(viewer, command, address) is None,
        again=again_values(command, view["params"]) if view["params"] is not None else [],
        stream_url=f"/api/v1/runs/{run.id}/stream",
        streaming=stream_available(),
    )


@bp.route("/runs/<run_id:run_id>/cancel", methods=["POST"])
def run_cancel(run_id: str) -> Response:
    try:
        runs.cancel(run_id, current_caller())
    except runs.RunRejected as exc:
        if exc.status == 404:
            abort(404)
        flash(exc.message)
    else:
        flash("Cancellation requested. The command is being stopped.")
    return redirect(url_for("web.run_page", run_id=run_id), 303)


def neutralise(value: Any) -> Any:
    """A text cell a spreadsheet would read as a formula gets a leading quote (formula injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def result_csv(run: Run) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    result = run.result or {}
    writer.writerow([neutralise(column) for column in result.get("columns", [])])
    for row in result.get("rows", []):
        writer.writerow([neutralise(cell) for cell in row])
    return buffer.getvalue()


@bp.route("/runs/<run_id:run_id>.csv")
def run_csv(run_id: str) -> Response:
    run = policy.run_for(me(), run_id, "view", client_address())
    if not run.result:
        abort(404)
    response = Response(result_csv(run), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{run.command}-{run.id[:8]}.csv"'
    return response
