"""JSON shapes of the API that are not the engine's ``<run>``: commands and audit events."""

from __future__ import annotations

from typing import Any

from gateway.catalogue import Catalogue, Command
from gateway.choices import Offered
from gateway.db.models import AuditEvent, Run
from gateway.platform.timeutil import as_utc
from gateway.platform.urls import external_url

PARAM_FIELDS = (
    "type", "required", "pattern", "min", "max", "choices", "max_length", "max_items", "help", "label",
    "multiple", "min_items", "depends_on",
)  # fmt: skip


def param_schema(command: Command, offered: Offered | None = None) -> dict[str, Any]:
    """Each parameter's spec; a secret parameter's default is never shown.

    A list from data shows its options as ``choices`` when ``offered`` has them (one
    command's view; null in the list of commands, and while the value it depends on is
    not chosen), and where to ask for them (``choices_url``); its source stays server-side.
    """
    shown = {}
    for name, spec in command.params.items():
        item = {field: getattr(spec, field) for field in PARAM_FIELDS}
        item["secret"] = spec.secret
        item["default"] = None if spec.secret else spec.default
        item["choices_url"] = None
        if spec.from_data:
            options = offered.options.get(name) if offered is not None else None
            item["choices"] = list(options.values) if options is not None else None
            item["choices_url"] = external_url("api.command_choices", name=command.name, param=name)
        shown[name] = item
    return shown


def takes_shell2http(command: Command) -> bool:
    """Whether Flask-Shell2HTTP may call it: a shell command whose ``args`` is a list (or a multiple choice),
    without approval (Shell2HTTP answers at once, so it cannot wait for a second person)."""
    args = command.params.get("args")
    return command.kind == "shell" and args is not None and args.expands and command.approval is None


def command_view(
    command: Command, catalogue: Catalogue, disabled: bool, offered: Offered | None = None
) -> dict[str, Any]:
    """What a caller needs to run a command; argv, env, sql and data source stay server-side.

    ``offered``: the lists from data read for this view; one that could not be read makes
    the command unavailable, with the reason.
    """
    reason = "disabled by an administrator" if disabled else catalogue.unavailable_reason(command)
    if reason is None and offered is not None:
        reason = offered.unavailable
    return {
        "name": command.name,
        "title": command.title,
        "description": command.description,
        "category": command.category,
        "kind": command.kind,
        "timeout": command.timeout,
        "cache_seconds": command.cache_seconds,
        "dashboard": command.dashboard,
        "available": reason is None,
        "unavailable_reason": reason,
        "shell2http": takes_shell2http(command),
        "approval": _approval_view(command),
        "params": param_schema(command, offered),
        "runs_url": external_url("api.start_run", name=command.name),
    }


def _approval_view(command: Command) -> dict[str, Any] | None:
    """What a caller of a command that needs approval is told: who approves, how many, how long a request waits."""
    if command.approval is None:
        return None
    approval = command.approval
    return {
        "approvers": list(approval.approvers),
        "min_approvals": approval.min_approvals,
        "expires_minutes": approval.expires_minutes,
    }


def accepted_view(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "url": external_url("api.get_run", run_id=run.id),
        "stream_url": external_url("api.stream_run", run_id=run.id),
    }


def _iso(value: Any) -> str | None:
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def audit_view(row: AuditEvent) -> dict[str, Any]:
    """A ledger row as the API shows it: exactly what its hash covers, plus the hash."""
    from gateway.audit import canonical_document

    return {**canonical_document(row), "hash": row.hash}
