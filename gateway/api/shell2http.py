"""Flask-Shell2HTTP 1.9 compatibility: ``/shell2http/<name>`` for commands with a ``list`` param ``args``
(or a ``choice`` with ``multiple``: a list whose items must be offered).

The same chokepoint as every run (``runs.start``: allowlist, policy, rate
limit, audit), in Flask-Shell2HTTP's shapes.  Keys resolve only among the
caller's own runs (and shared cached results, whose key is their run id);
whether the caller may read or cancel the run behind a key is the policy's
run decision, as on every other surface.  Without ``force_unique_key`` the key is
HMAC(SECRET_KEY, user id + command + args) — deterministic for its owner,
underivable for anyone else — and is found again by recomputing it over the
caller's recent runs of that command; with ``force_unique_key`` it is the run
id.  No extra column is needed.  A command that needs approval cannot be served
here (a Flask-Shell2HTTP client cannot wait for a second person): 400 naming
the reason, and a start is on record as refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from gateway import runs
from gateway.access import policy
from gateway.api.auth import require_csrf_for_sessions
from gateway.api.body import parse_json_text
from gateway.api.errors import ApiError
from gateway.api.shapes import takes_shell2http
from gateway.api.streams import take_slot, wait_for_finish
from gateway.catalogue import Command
from gateway.catalogue.params import FileValue, ParamError, RefusedUpload
from gateway.db.models import Run
from gateway.platform.addresses import client_address
from gateway.platform.extensions import db
from gateway.platform.identifiers import is_run_id
from gateway.platform.timeutil import as_utc
from gateway.platform.urls import external_url
from gateway.runs import uploads
from gateway.runs.callers import current_caller

bp = Blueprint("shell2http", __name__, url_prefix="/shell2http")
POST_FIELDS = frozenset({"args", "timeout", "force_unique_key", "callback_context"})
KEY_SCAN_LIMIT = 200
DERIVED_KEY = re.compile(r"[0-9a-f]{32}")
# Striped locks: two identical requests from one user cannot both pass the "already running" check.
_LOCKS = [threading.Lock() for _ in range(64)]
APPROVAL_REFUSAL = (
    "This command needs approval by a second person, which the Shell2HTTP interface cannot wait for; "
    "request it through /api/v1/commands/<name>/runs or the browser."
)


class Shell2HttpError(Exception):
    """Flask-Shell2HTTP's error shape: ``{"error": message}`` (+ ``key``/``result_url`` when one exists)."""

    def __init__(self, message: str, status: int = 400, key: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message, self.status, self.key, self.headers = message, status, key, headers or {}


def _error_response(exc: Shell2HttpError) -> Response:
    body: dict[str, Any] = {"error": exc.message}
    name = (request.view_args or {}).get("name")  # errors with a key come from the /<name> views
    if exc.key is not None and name is not None:
        body.update(key=exc.key, result_url=_result_url(name, exc.key))
    response = jsonify(body)
    response.status_code = exc.status
    response.headers.update(exc.headers)
    return response


def _api_error_response(exc: ApiError) -> Response:
    """Errors raised by shared helpers (CSRF, the stream cap) in this layer's shape."""
    return _error_response(Shell2HttpError(exc.message, exc.status, headers=exc.headers))


bp.before_request(require_csrf_for_sessions)
bp.register_error_handler(Shell2HttpError, _error_response)
bp.register_error_handler(ApiError, _api_error_response)


def _user() -> Any:
    return current_user._get_current_object()


def _result_url(name: str, key: str) -> str:
    return external_url("shell2http.command", name=name, key=key, wait="false")


def _command(name: str) -> Command:
    try:
        command = policy.command_for(_user(), name, client_address())
    except policy.Denied:
        raise Shell2HttpError("No such command.", 404) from None
    if command.approval is not None:
        raise Shell2HttpError(APPROVAL_REFUSAL, 400)
    if not takes_shell2http(command):
        raise Shell2HttpError("This command is not available through the Shell2HTTP interface.", 404)
    return command


def derived_key(user_id: int, name: str, params: Any) -> str:
    """HMAC(SECRET_KEY, user + command + canonical args and file params): only the owner's request derives it."""
    params = params if isinstance(params, dict) else {}
    material = {
        "user": user_id,
        "command": name,
        "args": params.get("args"),
        "files": sorted(k for k, v in params.items() if isinstance(v, dict) and "sha256" in v),
    }
    body = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, b"shell2http-key\0" + body, hashlib.sha256).hexdigest()[:32]


def _derived_run_id(user: Any, name: str, key: str) -> str | None:
    """The newest of the caller's recent runs of ``name`` whose derived key is ``key``."""
    if not DERIVED_KEY.fullmatch(key):
        return None
    recent = db.session.scalars(
        select(Run)
        .where(Run.user_id == user.id, Run.command == name)
        .order_by(Run.created_at.desc())
        .limit(KEY_SCAN_LIMIT)
    )
    for run in recent:
        if hmac.compare_digest(derived_key(user.id, name, run.params), key):
            return run.id
    return None


def _find(name: str, key: str, action: policy.RunAction = "view") -> Run | None:
    """The run behind ``key`` if the policy lets the caller ``action`` it, else None.

    A key names a run among the caller's own runs of this command: its run id
    (force_unique_key) or its derived key; a shared cached result of this
    command is named by its run id.
    """
    user = _user()
    run_id = key if is_run_id(key) else _derived_run_id(user, name, key)
    if run_id is None:
        return None
    try:
        run = policy.run_for(user, run_id, action, client_address())
    except policy.Denied:
        return None
    if run.command != name or not (policy.owns_run(user, run) or run.cache_key is not None):
        return None
    return run


# --- POST: start --------------------------------------------------------------------------------


def _request_body() -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON fields, uploaded files by field name): JSON body, or multipart with a ``request_json`` field."""
    raw: str | bytes
    if request.mimetype == "multipart/form-data":
        # Only request_json and files: any other field is as unknown as an unknown JSON key.
        # A part without a name (werkzeug calls it None) is as unknown as any other field.
        unnamed = ["(unnamed)"] if None in request.form or None in request.files else []
        extra = unnamed + sorted(name for name in request.form if name not in (None, "request_json"))
        if extra or len(request.form.getlist("request_json")) > 1:
            raise Shell2HttpError(f"Unknown or repeated field(s): {', '.join(extra or ['request_json'])}.")
        raw = request.form.get("request_json", "{}")
        files = {name: storage for name, storage in request.files.items() if storage.filename}
    elif request.mimetype == "application/json" or not request.get_data(cache=True):
        raw, files = request.get_data(cache=True) or b"{}", {}
    else:
        raise Shell2HttpError("Send application/json, or multipart/form-data with a request_json field.", 415)
    try:
        body = parse_json_text(raw)
    except ApiError as exc:
        raise Shell2HttpError(exc.message) from None
    if not isinstance(body, dict):
        raise Shell2HttpError("The request JSON must be an object.")
    unknown = sorted(set(body) - POST_FIELDS)
    if unknown:
        raise Shell2HttpError(f"Unknown field(s): {', '.join(unknown)}.")
    return body, files


def _checked_options(body: dict[str, Any], command: Command) -> tuple[Any, float | None, bool, Any]:
    args = body.get("args", [])  # validated with the params, so a refusal is audited like any other
    timeout = body.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < float("inf"):
            raise Shell2HttpError("timeout: must be a positive number of seconds.")
        timeout = min(float(timeout), command.timeout)  # can only lower the catalogue's
    unique = body.get("force_unique_key", False)
    if not isinstance(unique, bool):
        raise Shell2HttpError("force_unique_key: must be true or false.")
    context = body.get("callback_context")
    if context is not None and not isinstance(context, dict):
        raise Shell2HttpError("callback_context: must be an object.")
    return args, timeout, unique, context


def _store_files(command: Command, args: Any, files: dict[str, Any]) -> tuple[Any, dict[str, Any], str | None]:
    """``@field`` args name uploaded files: each becomes the ``file`` param of that name and leaves args.

    An upload that cannot be one (no file parameter of that name, or not
    referenced in args) goes on to validation as a ``RefusedUpload``, which
    refuses it by name and audits the refusal, as for any other bad value.
    """
    if not files:
        return args, {}, None
    items = args if isinstance(args, list) else []
    refs = {item[1:] for item in items if isinstance(item, str) and item.startswith("@") and item[1:] in files}
    usable = {ref for ref in refs if (spec := command.params.get(ref)) is not None and spec.type == "file"}
    refused: dict[str, Any] = {
        name: RefusedUpload(f"was uploaded but args does not reference it as @{name}")
        if name not in refs
        else RefusedUpload("is not a file parameter, so no upload can fill it")
        for name in sorted(set(files) - usable)
    }
    limit = int(current_app.config["MAX_CONTENT_LENGTH"])
    try:  # the web form's path: files owned by the run-as account, so `cat @file` can read them
        stored, folder = uploads.store_uploads(
            {ref: files[ref] for ref in sorted(usable)}, limit, runs.run_as_account()
        )
    except ParamError as exc:
        raise Shell2HttpError(f"{exc.field}: {exc.message}") from None
    kept = [item for item in items if not (isinstance(item, str) and item.startswith("@") and item[1:] in usable)]
    return (kept if isinstance(args, list) else args), {**stored, **refused}, folder


def _rejection(exc: runs.RunRejected) -> Shell2HttpError:
    """The engine's refusal (validation 400, 404, 409, 429 + Retry-After, 503) in this layer's shape."""
    message = exc.message
    if exc.details:
        message += " " + "; ".join(f"{field}: {text}" for field, text in exc.details.items())
    headers = {"Retry-After": str(exc.retry_after or 60)} if exc.status == 429 else {}
    return Shell2HttpError(message, exc.status, None, headers)


@bp.post("/<name:name>")
def start(name: str) -> Response:
    try:
        command = _command(name)
    except Shell2HttpError as exc:
        if exc.status == 400:  # a start of a command that needs approval: refused, and on record
            raise _rejection(runs.refuse_request(current_caller(), name, 400, exc.message)) from None
        raise
    try:
        body, files = _request_body()
        args, timeout, unique, context = _checked_options(body, command)
    except Shell2HttpError as exc:  # a refusal of what the caller sent: on record like any other
        refusal = runs.refuse_request(current_caller(), name, exc.status, exc.message)
        raise _rejection(refusal) from None
    args, stored, folder = _store_files(command, args, files)
    params: dict[str, Any] = {"args": args}
    user = _user()
    key = None
    if not unique:
        uploaded = {ref: {"sha256": value.sha256} for ref, value in stored.items() if isinstance(value, FileValue)}
        shown = {"args": args, **uploaded}
        key = derived_key(user.id, name, shown)
    lock = _LOCKS[hash((user.id, key)) % len(_LOCKS)] if key else threading.Lock()
    with lock:
        if key is not None:
            previous = _find(name, key)
            if previous is not None and previous.status in runs.LIVE:
                uploads.remove_folder(folder)
                raise Shell2HttpError(f"A run with key {key} is still running; fetch its result_url.", 400, key)
        try:
            started = runs.start(
                name, params, current_caller(), files=stored or None, callback_context=context,
                timeout=timeout, tempdir=folder,
            )  # fmt: skip
        except runs.RunRejected as exc:
            raise _rejection(exc) from None
    run = started.run
    if key is None or (started.cached and not policy.owns_run(user, run)):
        key = run.id
    return _json({"key": key, "result_url": _result_url(name, key), "status": "running"}, 202)


# --- GET: result, DELETE: cancel --------------------------------------------------------------------


def _key_arg() -> str:
    key = request.args.get("key", "")
    if not key:
        raise Shell2HttpError("No key provided in request.")
    return key


def _epoch(value: Any) -> float | None:
    return None if value is None else as_utc(value).timestamp()


def _report(run: Run, key: str, name: str) -> dict[str, Any]:
    if run.status in runs.LIVE:
        return {"status": "running", "key": key, "result_url": _result_url(name, key)}
    chunks = runs.output_chunks(run.id, limit=1_000_000)
    stdout = "".join(c.text for c in chunks if c.stream == "stdout")
    stderr = "".join(c.text for c in chunks if c.stream == "stderr")
    start_time, end_time = _epoch(run.started_at or run.created_at), _epoch(run.finished_at)
    return {
        "key": key,
        "report": stdout,
        "error": _error(run, stderr),
        "returncode": run.exit_code,
        "start_time": start_time,
        "end_time": end_time,
        "process_time": None if start_time is None or end_time is None else max(0.0, end_time - start_time),
    }


def _error(run: Run, stderr: str) -> str | None:
    """Flask-Shell2HTTP's ``error``: why the run ended, when the run itself failed (timed out, cancelled, lost,
    never started), else its stderr; a command's exit status alone is ``returncode``'s to tell."""
    if run.status == "timed_out":
        return f"command timedout after {run.timeout_seconds:g} seconds."  # upstream's words, for its clients
    if run.error and (run.status in ("cancelled", "lost") or run.exit_code is None):
        return run.error
    return stderr or None


def _json(payload: Any, status: int = 200) -> Response:
    response = jsonify(payload)
    response.status_code = status
    return response


def _wait_flag() -> bool:
    value = request.args.get("wait", "false").lower()
    if value not in ("true", "false"):
        raise Shell2HttpError("wait: must be true or false.")
    return value == "true"


@bp.get("/<name:name>", endpoint="command")
def result(name: str) -> Response:
    _command(name)
    key = _key_arg()
    wait = _wait_flag()
    run = _find(name, key)
    if run is None:
        raise Shell2HttpError(f"No report exists for key {key}.", 404)
    if wait and run.status in runs.LIVE:
        with take_slot():
            run = wait_for_finish(run.id, float(run.timeout_seconds)) or run
    return _json(_report(run, key, name))


@bp.delete("/<name:name>")
def delete(name: str) -> Response:
    _command(name)
    key = _key_arg()
    run = _find(name, key, "cancel")
    if run is None:
        raise Shell2HttpError(f"No report exists for key {key}.", 404)
    if run.status in runs.LIVE:
        try:
            runs.cancel(run.id, current_caller())
        except runs.RunRejected as exc:
            if exc.status != 409:  # 409: it ended meanwhile, which is what DELETE wanted
                raise Shell2HttpError(exc.message, exc.status, key) from None
    return Response(status=204)
