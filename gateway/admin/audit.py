"""/admin/audit: search the ledger, look at one event, export the current filter, verify the chain.

The list pages by ``seq`` (``?before=<seq>``), never by OFFSET and never with a
COUNT over the table. The export is a streamed response fed by a generator
that reads the ledger a batch at a time, so its memory does not grow with the
ledger. Verification is a POST (it reads the whole chain: not something a
crawler or a prefetch should trigger).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, current_app, render_template, request, stream_with_context

from gateway import audit as ledger
from gateway.admin.blueprint import bp
from gateway.audit import exports, queries
from gateway.platform.extensions import db

PAGE_SIZE = 50


def _filter_or_error() -> tuple[queries.AuditFilter, str | None]:
    try:
        return queries.AuditFilter.from_args(request.args), None
    except queries.FilterError as exc:
        return queries.AuditFilter(), f"{exc.field}: {exc.message}"


def _before() -> int | None:
    raw = request.args.get("before", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        abort(400)
    return int(raw)


def render_audit(verification: dict[str, Any] | None = None) -> tuple[str, int]:
    flt, error = _filter_or_error()
    before = _before()
    rows, next_before = ([], None) if error else queries.page(flt, before_seq=before, limit=PAGE_SIZE)
    page = render_template(
        "admin/audit.html",
        rows=rows,
        next_before=next_before,
        first_page=before is None,
        filters=flt.as_args(),
        raw=request.args,
        error=error,
        events=queries.known_events(),
        verification=verification,
    )
    return page, 400 if error else 200


@bp.route("/audit")
def audit() -> tuple[str, int]:
    return render_audit()


@bp.route("/audit/<int:seq>")
def audit_event(seq: int) -> str:
    row = queries.get_event(seq)
    if row is None:
        abort(404)
    detail = row.detail if isinstance(row.detail, dict) else {}
    return render_template(
        "admin/audit_event.html",
        row=row,
        params_json=_pretty(row.params),
        detail_json=_pretty({k: v for k, v in detail.items() if k != "output_excerpt"} if detail else row.detail),
        excerpt=detail.get("output_excerpt"),
    )


def _pretty(value: Any) -> str | None:
    return None if value is None else json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@bp.route("/audit/export.<fmt>")
def audit_export_view(fmt: str) -> Response:
    if fmt not in exports.FORMATS:
        abort(404)
    try:
        flt = queries.AuditFilter.from_args(request.args)
    except queries.FilterError:
        abort(400)
    lines = exports.export_lines(fmt, flt)
    response = Response(stream_with_context(lines), mimetype=exports.FORMATS[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{exports.filename(fmt)}"'
    return response


@bp.route("/audit/verify", methods=["POST"])
def audit_verify() -> tuple[str, int]:
    keyring = ledger.Keyring.from_config(current_app.config)
    result = ledger.verify(db.session(), keyring)
    db.session.rollback()
    return render_audit(verification={"ok": result.ok, **result.as_dict(), "reason": result.reason})
