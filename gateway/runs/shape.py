"""The DESIGN.md ``<run>`` shape: one view of a run for the API, the stream's end event and the run page."""

from __future__ import annotations

from typing import Any

from gateway.access import policy
from gateway.db.models import Run
from gateway.runs.store import iso, output_text


def run_view(run: Run, viewer: Any, *, cached: bool = False, include_output: bool = True) -> dict[str, Any]:
    """The ``<run>`` shape for ``viewer``; a shared cached result hides who ran it, from where, with what."""
    details = policy.sees_run_details(viewer, run)
    view: dict[str, Any] = {
        "id": run.id,
        "command": run.command,
        "params": run.params if details else None,
        "status": run.status,
        "exit_code": run.exit_code,
        "user": run.username if details else None,
        "source_ip": run.source_ip if details else None,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_ms": run.duration_ms,
        "output_bytes": run.output_bytes,
        "output_truncated": run.output_truncated,
        "output_sha256": run.output_sha256,
        "result": run.result,
        "error": run.error,
        "cached": cached,
    }
    if include_output:
        view["output"] = output_text(run.id)
    return view
