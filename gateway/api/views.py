"""The JSON API v1 routes (DESIGN.md "HTTP surface"); openapi.json in this package is their reference."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, request, stream_with_context
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from gateway import approvals, audit, choices, runs
from gateway.access import policy
from gateway.api.auth import require_csrf_for_sessions, still_authorised
from gateway.api.body import json_object_body
from gateway.api.errors import ApiError, api_error_response
from gateway.api.limits import choices_limit, user_key
from gateway.api.queryargs import check_number, int_arg, name_arg, number_arg, text_arg, time_arg
from gateway.api.shapes import accepted_view, audit_view, command_view
from gateway.api.streams import take_slot, wait_for_finish
from gateway.catalogue import switches
from gateway.db.models import AuditEvent, Run
from gateway.platform.addresses import client_address
from gateway.platform.extensions import db, limiter
from gateway.runs.callers import current_caller

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.before_request(require_csrf_for_sessions)
bp.register_error_handler(ApiError, api_error_response)

MAX_WAIT = 60
START_FIELDS = frozenset({"params", "wait"})
OPENAPI_PATH = Path(__file__).with_name("openapi.json")


def _user() -> Any:
    return current_user._get_current_object()


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json", headers=headers)


# --- commands -------------------------------------------------------------------------------


@bp.get("/commands")
def list_commands() -> Response:
    catalogue = switches.current_catalogue()
    disabled = switches.disabled_commands()
    runnable = policy.visible_commands(_user(), catalogue, client_address())
    items = [command_view(c, catalogue, c.name in disabled) for c in runnable]
    return _json({"items": items, "next_cursor": None})


@bp.get("/commands/<name:name>")
def get_command(name: str) -> Response:
    command = policy.command_for(_user(), name, client_address())
    catalogue, disabled = switches.current_catalogue(), switches.is_disabled(name)
    usable = not disabled and catalogue.unavailable_reason(command) is None
    lists = choices.offered(command, {}, "json") if usable and command.lists_from_data else None
    return _json(command_view(command, catalogue, disabled, lists))


@bp.get("/commands/<name:name>/choices/<param>")
@limiter.limit(choices_limit, key_func=user_key)
def command_choices(name: str, param: str) -> Response:
    """The options of one choice parameter for the values it depends on (``?<other>=…``), as a form would get them.

    404 for a command the caller may not use (the policy's answer, as for the command) and
    for a name that is not one of its choice parameters.  Each call may run the source
    query, so a user's calls are capped (``CHOICES_RATE_LIMIT``, counted before the policy).
    """
    command = policy.command_for(_user(), name, client_address())
    spec = command.params.get(param)
    if spec is None or spec.type != "choice":
        raise ApiError(404, "not_found", "No such choice parameter.")
    try:
        options = choices.requested(command, param, request.args.to_dict(flat=False))
    except choices.ChoiceErrors as exc:
        raise ApiError(400, "validation_error", "Some parameters are not valid.", exc.errors) from None
    except runs.ListUnavailable as exc:
        raise ApiError(503, "unavailable", f"These choices are unavailable: {exc.reason}.") from None
    return _json({"param": param, "choices": list(options.values), "truncated": options.truncated})


# --- runs -----------------------------------------------------------------------------------


def _visible_run(run_id: str) -> Run:
    return policy.run_for(_user(), run_id, "view", client_address())


def _shared_result(user: Any, run: Run) -> bool:
    """Seen by someone other than its owner or an admin: it can only be a shared cached result."""
    return not policy.sees_run_details(user, run)


@bp.post("/commands/<name:name>/runs")
def start_run(name: str) -> Response:
    try:
        params, wait = _start_request()
    except ApiError as exc:  # a refusal of what the caller sent: on record like any other
        refusal = runs.refuse_request(current_caller(), name, exc.status, exc.message, exc.details)
        raise ApiError.from_rejection(refusal) from None
    try:
        started = runs.start(name, params, current_caller(), source="json")
    except runs.RunRejected as exc:
        raise ApiError.from_rejection(exc) from None
    run = started.run
    if wait > 0 and run.status in runs.LIVE:
        slot = _optional_slot()
        if slot is not None:
            with slot:
                run = wait_for_finish(run.id, wait, started.version) or run
    if run.status in runs.TERMINAL:
        return _json(runs.run_view(run, _user(), cached=started.cached))
    accepted = accepted_view(run)
    return _json(accepted, 202, {"Location": accepted["url"]})


def _start_request() -> tuple[dict[str, Any], float]:
    """The start body's ``params`` and ``wait``; ApiError (400/415) naming the field otherwise."""
    body = json_object_body(START_FIELDS)
    params = body.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ApiError.invalid("params", "must be an object")
    return params, check_number("wait", body.get("wait", 0), 0, MAX_WAIT)


def _optional_slot() -> Any:
    """The run has started already: with no slot free (the caller's own or the process's), answer 202 at once."""
    try:
        return take_slot()
    except ApiError:
        return None


@bp.get("/runs/<run_id:run_id>")
def get_run(run_id: str) -> Response:
    wait = number_arg("wait", 0, 0, MAX_WAIT)
    run = _visible_run(run_id)
    if wait > 0 and run.status not in runs.TERMINAL:  # live, or waiting for approval
        with take_slot():
            run = wait_for_finish(run.id, wait) or run
    user = _user()
    return _json(runs.run_view(run, user, cached=_shared_result(user, run)))


# Output chunk ids are a 32-bit column: a larger id is never an event's, and PostgreSQL refuses to compare one.
MAX_EVENT_ID = 2**31 - 1


def _last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or ""
    raw = raw.strip()
    if not raw:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or int(raw) > MAX_EVENT_ID:
        raise ApiError.invalid("Last-Event-ID", "must be the id of an output event (an integer)")
    return int(raw)


@bp.get("/runs/<run_id:run_id>/stream")
def stream_run(run_id: str) -> Response:
    from gateway.api.streams import sse_events

    after = _last_event_id()
    run = _visible_run(run_id)
    slot = take_slot()
    user = _user()
    try:
        body = stream_with_context(sse_events(run.id, user, after, still_authorised))
        response = Response(body, mimetype="text/event-stream")
    except BaseException:
        slot.release()
        raise
    response.call_on_close(slot.release)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@bp.post("/runs/<run_id:run_id>/cancel")
def cancel_run(run_id: str) -> Response:
    try:
        run = runs.cancel(run_id, current_caller())
    except runs.RunRejected as exc:
        raise ApiError.from_rejection(exc) from None
    return _json(accepted_view(run), 202)


@bp.get("/runs")
def list_runs() -> Response:
    limit = int_arg("limit", 50, 1, 500)
    command = name_arg("command")
    status = text_arg("status")
    if status is not None and status not in runs.STATUSES:
        raise ApiError.invalid("status", "must be one of " + ", ".join(runs.STATUSES))
    cursor = text_arg("cursor")
    user = _user()
    try:
        page, next_cursor = runs.list_runs(
            owner_id=policy.listable_owner(user), address=client_address(),
            command=command, status=status, limit=limit or 50, cursor=cursor,
        )  # fmt: skip
    except ValueError:
        raise ApiError.invalid("cursor", "is not a cursor this API returned") from None
    found = approvals.summaries(run.id for run in page)
    items = [runs.run_view(run, user, include_output=False, approval=found.get(run.id)) for run in page]
    return _json({"items": items, "next_cursor": next_cursor})


# --- audit (admins only: staff get 403) ------------------------------------------------------


def _require_admin() -> None:
    if not policy.is_admin(_user()):
        raise ApiError(403, "forbidden", "Only administrators may read the audit ledger.")


AUDIT_TEXT_FILTERS = {
    "actor": AuditEvent.actor_name,
    "event": AuditEvent.event,
    "command": AuditEvent.command,
    "outcome": AuditEvent.outcome,
    "source_ip": AuditEvent.source_ip,
}


@bp.get("/audit")
def list_audit() -> Response:
    _require_admin()
    limit = int_arg("limit", 50, 1, 500) or 50
    query = select(AuditEvent).order_by(AuditEvent.seq.desc())
    for name, column in AUDIT_TEXT_FILTERS.items():
        value = text_arg(name)
        if value is not None:
            query = query.where(column == value)
    since, until = time_arg("since"), time_arg("until")
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    cursor = int_arg("cursor", None, 1, 2**62)
    if cursor is not None:
        query = query.where(AuditEvent.seq < cursor)
    rows = list(db.session.scalars(query.limit(limit + 1)))
    page = rows[:limit]
    next_cursor = str(page[-1].seq) if len(rows) > limit and page else None
    return _json({"items": [audit_view(row) for row in page], "next_cursor": next_cursor})


@bp.get("/audit/verify")
def verify_audit() -> Response:
    _require_admin()
    from_seq = int_arg("from_seq", None, 1, 2**62)
    keyring = audit.Keyring.from_config(current_app.config)
    result = audit.verify(db.session(), keyring, from_seq=from_seq)
    return _json(result.as_dict())


# --- the OpenAPI document ---------------------------------------------------------------------


@cache
def openapi_text() -> str:
    return OPENAPI_PATH.read_text(encoding="utf-8")


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(openapi_text(), mimetype="application/json")
