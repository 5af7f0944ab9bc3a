"""The run page (state, output, result table), cancel, and the CSV and text downloads.

The page is rendered from the database, so it is complete without
JavaScript (reload for more while a run is live); ``static/runpage.js`` then
follows the API's event stream, appends only chunks newer than the last one
rendered here (nothing is shown twice), and at the stream's end swaps in the
finished state read from this page again, without reloading it.
"""

from __future__ import annotations

import csv
import io
import re
import signal
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import format_decimal
from sqlalchemy import select
from werkzeug.wrappers import Response

from gateway import runs
from gateway.access import policy
from gateway.catalogue import switches as command_switches
from gateway.db.models import AuditEvent, Run
from gateway.platform.addresses import client_address
from gateway.platform.extensions import db
from gateway.platform.phrases import on_page, restored
from gateway.platform.timeutil import as_utc, utcnow
from gateway.runs.callers import current_caller
from gateway.web.blueprint import bp
from gateway.web.paramform import again_values
from gateway.web.shared import STATUS_LABELS, duration, me
from gateway.web.words import _

MAX_RENDERED_CHUNKS = 20_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Ending:
    """How a finished run ended, in words: ``text``, then who cancelled it and when (if anyone did)."""

    text: str
    cancelled_by: str | None = None
    cancelled_at: datetime | None = None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_code_text(code: int) -> str:
    """An exit code as people read it: signals by name (a negative code, or a shell's 128 + N)."""
    if code < 0:
        return _("killed by %(signal)s", signal=signal_name(-code))
    if code == 0:
        return _("exit code 0 (success)")
    if 128 < code < 128 + 65:
        return _("exit code %(code)s (128 + %(signal)s)", code=code, signal=signal_name(code - 128))
    return _("exit code %(code)s", code=code)


def cancel_request(run: Run) -> AuditEvent | None:
    """The ledger's newest request to cancel this run (who asked, and when)."""
    return db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.run_id == run.id, AuditEvent.event == "run.cancel_requested")
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).first()


def recorded_error(run: Run) -> str:
    """A run's recorded error in the page's language.

    ``runs.error`` keeps the English (the API's, the ledger's); ``runs.error_phrase`` the same
    error as a phrase, values and a nested reason included, which ``on_page`` renders here. A
    run recorded before that column (or with an error that is no phrase, or a stored form that
    no longer fits) shows ``runs.error``: a fixed sentence found by its msgid, anything else as is.
    """
    return on_page(restored(run.error, run.error_phrase))


def ending(run: Run, show_who: bool) -> Ending | None:
    """The exit explained for a run that ended (None while it is live or never ran)."""
    if run.status in runs.LIVE or run.status in ("pending_approval", "denied", "expired", "withdrawn"):
        return None
    code = run.exit_code
    if run.status == "cancelled":
        if code is not None and code < 0:
            how = _("stopped by %(signal)s — cancelled", signal=signal_name(-code))
        elif code is None and run.started_at is None:
            how = _("stopped before it started — cancelled")
        else:
            how = _("stopped — cancelled")
        request_event = cancel_request(run)
        if request_event is None:
            return Ending(how)
        who = (request_event.actor_name or _("someone")) if show_who else _("someone")
        return Ending(how, who, request_event.at)
    if run.status == "timed_out":
        seconds = format_decimal(run.timeout_seconds)
        if code is not None and code < 0:
            return Ending(_("timed out after %(seconds)s s, %(exit)s", seconds=seconds, exit=exit_code_text(code)))
        return Ending(_("timed out after %(seconds)s s", seconds=seconds))
    if run.status == "lost":
        return Ending(_("lost: the worker running it stopped answering"))
    if code is None:
        return Ending(recorded_error(run) if run.error else _("no exit code")) if run.status == "failed" else None
    return Ending(exit_code_text(code))


def download_name(run: Run, extension: str) -> str:
    """A file name that is safe in a header and on any disk: the command's name and the run's id."""
    command = UNSAFE_IN_NAME.sub("-", run.command).strip(".-")[:60] or "run"
    return f"{command}-{run.id}.{extension}"


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
    details = view["user"] is not None
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
        ending=ending(run, details),
        error_output=any(chunk.stream == "stderr" for chunk in chunks),
        error_text=recorded_error(run),
    )


@bp.route("/runs/<run_id:run_id>/cancel", methods=["POST"])
def run_cancel(run_id: str) -> Response:
    try:
        runs.cancel(run_id, current_caller())
    except runs.RunRejected as exc:
        if exc.status == 404:
            abort(404)
        flash(on_page(exc.message))
    else:
        flash(_("Cancellation requested. The command is being stopped."))
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
    response.headers["Content-Disposition"] = f'attachment; filename="{download_name(run, "csv")}"'
    return response


@bp.route("/runs/<run_id:run_id>.txt")
def run_txt(run_id: str) -> Response:
    """The run's output as a text file: whoever may view the run may download it."""
    run = policy.run_for(me(), run_id, "view", client_address())
    response = Response(runs.output_text(run.id), mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="{download_name(run, "txt")}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
