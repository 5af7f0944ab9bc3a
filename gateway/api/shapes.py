"""JSON shapes of the API that are not the engine's ``<run>``: commands and audit events."""

from __future__ import annotations

from typing import Any

from gateway.catalogue import Catalogue, Command
from gateway.db.models import AuditEvent, Run
from gateway.platform.timeutil import as_utc
from gateway.platform.urls import external_url

PARAM_FIELDS = ("type", "required", "pattern", "min", "max", "choices", "max_length", "max_items", "help", "label")


def param_schema(command: Command) -> dict[str, Any]:
    """Each parameter's spec; a secret parameter's default is never shown."""
    shown = {}
    for name, spec in command.params.items():
        item = {field: getattr(spec, field) for field in PARAM_FIELDS}
        item["secret"] = spec.secret
        item["default"] = None if spec.secret else spec.default
        shown[name] = item
    return shown


def command_view(command: Command, catalogue: Catalogue, disabled: bool) -> dict[str, Any]:
    """What a caller needs to run a command; argv, env, sql and data source stay server-side."""
    reason = "disabled by an administrator" if disabled else catalogue.unavailable_reason(command)
    args = command.params.get("args")
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
        "shell2http": command.kind == "shell" and args is not None and args.type == "list" and command.approval is None,
        "approval": _approval_view(command),
        "params": param_schema(command),
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
