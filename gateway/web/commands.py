"""The command page: a form generated from the parameter schema; submitting it starts a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from gateway import choices, runs
from gateway.access import policy
from gateway.catalogue import Command
from gateway.catalogue import switches as command_switches
from gateway.catalogue.params import FileValue, ParamError
from gateway.platform.addresses import client_address
from gateway.platform.phrases import on_page
from gateway.runs.callers import current_caller
from gateway.runs.uploads import store_uploads
from gateway.web.blueprint import bp
from gateway.web.paramform import build_fields, prefill_from, read_submission, unknown_errors
from gateway.web.shared import me
from gateway.web.words import _


def blocked_reason(command: Command) -> str | None:
    """Why the form is disabled right now (kill switch or unconfigured data source), or None."""
    disabled = command_switches.disabled_commands()
    if command.name in disabled:
        reason = disabled[command.name]
        if reason:
            return _("An administrator has disabled this command: %(reason)s", reason=reason)
        return _("An administrator has disabled this command.")
    reason = command_switches.current_catalogue().unavailable_reason(command)
    return unavailable(reason) if reason else None


def unavailable(reason: str) -> str:
    return _("This command is unavailable: %(reason)s.", reason=on_page(reason))


def render_form(
    command: Command,
    values: Mapping[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    """The form for these values; its lists from data are the ones offered for them (read only when it can run)."""
    errors = errors or {}
    blocked = blocked_reason(command)
    offered = choices.offered(command, values or {}) if command.lists_from_data and blocked is None else None
    if offered is not None and offered.unavailable:
        blocked = unavailable(offered.unavailable)
    fields = build_fields(command, values, errors, offered)
    page = render_template(
        "command.html",
        command=command,
        fields=fields,
        other_errors=unknown_errors(command, errors),
        message=message,
        blocked=blocked,
        multipart=any(spec.type == "file" for spec in command.params.values()),
        scripted=any(field.searchable or field.choices_url for field in fields),
    )
    return page, status


@bp.route("/commands/<name:name>", methods=["GET"])
def command_form(name: str) -> tuple[str, int]:
    command = policy.command_for(me(), name, client_address())
    return render_form(command, prefill_from(command, request.args))


def _store_files(command: Command) -> tuple[dict[str, FileValue], str | None]:
    """Uploaded files into a private per-run folder; (files, folder). Raises ParamError on a too-large file."""
    wanted = [name for name, spec in command.params.items() if spec.type == "file"]
    present = {name: request.files[name] for name in wanted if request.files.get(name) and request.files[name].filename}
    return store_uploads(present, current_app.config["MAX_CONTENT_LENGTH"], runs.run_as_account())


@bp.route("/commands/<name:name>", methods=["POST"])
def command_submit(name: str) -> Response | tuple[str, int]:
    command = command_switches.current_catalogue().get(name)
    submitted = read_submission(command, request.form, request.files) if command is not None else {}
    files: dict[str, FileValue] = {}
    folder: str | None = None
    if command is not None and policy.check_run(me(), command, client_address()) is None:
        try:
            files, folder = _store_files(command)
        except ParamError as exc:
            return render_form(command, submitted, {exc.field: exc.message}, _("The file is too large."), 400)
    try:
        started = runs.start(name, submitted, current_caller(), source="form", files=files or None, tempdir=folder)
    except runs.RunRejected as exc:
        if exc.status == 404 or command is None:
            abort(404)
        if exc.status == 400:
            return render_form(command, submitted, exc.details, _("Please correct the fields marked below."), 400)
        page, status = render_form(command, submitted, None, on_page(exc.message), exc.status)
        response = Response(page, status=status, mimetype="text/html")
        if exc.retry_after:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    return redirect(url_for("web.run_page", run_id=started.run.id, cached="1" if started.cached else None), 303)
