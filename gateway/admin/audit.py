"""/admin/audit: search the ledger, look at one event, export the current filter, verify the chain.

The list pages by ``seq`` (``?before=<seq>``), never by OFFSET and never with a
COUNT over the table. The export is a streamed response fed by a generator
that reads the ledger a batch at a time, so its memory does not grow with the
ledger. Verification is a POST (it reads the whole chain: not something a
crawler or a prefetch should trigger).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Response, abort, current_app, render_template, request, stream_with_context
from flask_babel import format_decimal as number
from flask_babel import get_translations
from flask_babel import gettext as _

from gateway import audit as ledger
from gateway.admin.blueprint import bp
from gateway.audit import exports, queries
from gateway.audit.summary import EVENT_LABELS, FAMILY_LABELS, Words, event_label, summary
from gateway.platform.extensions import db
from gateway.platform.phrases import N_, on_page

PAGE_SIZE = 50


def page_words() -> Words:
    """The Summary column and event filter in the page's language (the exports and the ledger stay English)."""
    translations = get_translations()  # the raw lookups: summary.py fills the placeholders itself
    return Words(translate=translations.ugettext, plural=translations.ungettext, number=number)


# The filter form's labels (the field a refused filter names) and the English texts of
# ``queries.FilterError`` and of the verifier's reasons (English in the CLI and the API),
# translated on this page only.
FIELD_LABELS = {
    "since": N_("From"),
    "until": N_("Until"),
    "actor": N_("Actor"),
    "event": N_("Event"),
    "command": N_("Command"),
    "outcome": N_("Outcome"),
    "source_ip": N_("Source address"),
    "text": N_("Text in parameters or detail"),
}


def _filter_or_error() -> tuple[queries.AuditFilter, str | None]:
    try:
        return queries.AuditFilter.from_args(request.args), None
    except queries.FilterError as exc:
        label = FIELD_LABELS.get(exc.field)
        field = _(label) if label else exc.field
        return queries.AuditFilter(), _("%(field)s: %(problem)s", field=field, problem=on_page(exc.message))


def _before() -> int | None:
    raw = request.args.get("before", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        abort(400)
    return int(raw)


def _event_options(chosen: str | None) -> list[tuple[str, str]]:
    """(value, label) for the event select: whole families, then each known event by its readable name.

    A value typed into the query string that is not in the list (another family, an event this
    version does not know) is offered too, so the page shows the filter it applied.
    """
    words = page_words()
    options = [(family, event_label(family, words)) for family in FAMILY_LABELS]
    events = set(queries.known_events()) | set(EVENT_LABELS)
    labelled = ((name, _("%(label)s (%(event)s)", label=event_label(name, words), event=name)) for name in events)
    options += sorted(labelled, key=lambda option: option[1])
    if chosen and chosen not in {value for value, _ in options}:
        options.insert(0, (chosen, chosen))
    return options


def _picker_value(value: datetime | None) -> str:
    """A filter time as a ``datetime-local`` input's value (UTC; the page's script shows it in local time)."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M" if value.second == 0 else "%Y-%m-%dT%H:%M:%S")


def _quick_ranges(flt: queries.AuditFilter) -> list[tuple[str, str, dict[str, str]]]:
    """(key, label, query args) for the quick ranges, other filters kept. Without JavaScript they are UTC
    ("today" from UTC midnight); the page's script recomputes them in the reader's zone before following."""
    now = datetime.now(UTC).replace(microsecond=0)
    starts = {
        "hour": (_("Last hour"), now - timedelta(hours=1)),
        "today": (_("Today"), now.replace(hour=0, minute=0, second=0)),
        "week": (_("Last 7 days"), now - timedelta(days=7)),
    }
    kept = {name: value for name, value in flt.as_args().items() if name not in ("since", "until")}
    return [
        (key, label, {**kept, "since": start.strftime("%Y-%m-%dT%H:%M:%SZ")}) for key, (label, start) in starts.items()
    ]


def render_audit(verification: dict[str, Any] | None = None) -> tuple[str, int]:
    flt, error = _filter_or_error()
    before = _before()
    rows, next_before = ([], None) if error else queries.page(flt, before_seq=before, limit=PAGE_SIZE)
    matched, more = (0, False) if error else queries.count(flt)
    words = page_words()
    page = render_template(
        "admin/audit.html",
        rows=rows,
        summaries={
            row.seq: summary(row.event, row.detail, command=row.command, outcome=row.outcome, words=words)
            for row in rows
        },
        next_before=next_before,
        first_page=before is None,
        filters=flt.as_args(),
        raw=request.args,
        error=error,
        event_options=_event_options(flt.event or request.args.get("event", "").strip() or None),
        since_value=_picker_value(flt.since),
        until_value=_picker_value(flt.until),
        quick_ranges=_quick_ranges(flt),
        matched=matched,
        more=more,
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
        summary=summary(row.event, row.detail, command=row.command, outcome=row.outcome, words=page_words()),
        label=event_label(row.event, page_words()),
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
    response.headers["Content-Disposition"] = f'attachment; filename="{exports.filename(fmt, flt)}"'
    return response


@bp.route("/audit/verify", methods=["POST"])
def audit_verify() -> tuple[str, int]:
    keyring = ledger.Keyring.from_config(current_app.config)
    result = ledger.verify(db.session(), keyring)
    db.session.rollback()
    return render_audit(verification={"ok": result.ok, **result.as_dict(), "reason": on_page(result.reason) or None})
