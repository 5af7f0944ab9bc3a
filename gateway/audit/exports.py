"""Streamed exports of a filtered audit ledger: CSV (formula injection neutralised) and JSON Lines.

Both formats are generators of text lines fed by ``audit_query.iter_rows``,
which pages by ``seq``: the web view hands them to a streamed response and the
CLI writes them to stdout, so an export of millions of rows never sits in memory.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

from gateway.audit.queries import COLUMNS, AuditFilter, iter_rows
from gateway.platform.timeutil import rfc3339

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
HEADER = [column.key for column in COLUMNS]
# A spreadsheet reads a cell starting with one of these as a formula (or a DDE call).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """Prefix a would-be formula with a quote so a spreadsheet shows it as text."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _plain(row: Any) -> dict[str, Any]:
    """A row as JSON-ready values: times in the ledger's RFC 3339 form, JSON columns as they are."""
    values = dict(row._mapping)
    values["at"] = rfc3339(values["at"]) if values["at"] is not None else None
    return values


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return neutralise(str(value))


def csv_lines(rows: Iterable[Any]) -> Iterator[str]:
    """The header, then one CSV record per row (every text cell neutralised)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush(record: list[str]) -> str:
        writer.writerow(record)
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return line

    yield flush(HEADER)
    for row in rows:
        values = _plain(row)
        yield flush([_csv_cell(values[name]) for name in HEADER])


def jsonl_lines(rows: Iterable[Any]) -> Iterator[str]:
    """One JSON object per line; the values are exactly the ledger's (JSON is not a formula language)."""
    for row in rows:
        yield json.dumps(_plain(row), ensure_ascii=False, separators=(",", ":"), default=str) + "\n"


def export_lines(fmt: str, flt: AuditFilter) -> Iterator[str]:
    """The export of ``flt`` in ``fmt`` (``csv`` or ``jsonl``), line by line."""
    if fmt not in FORMATS:
        raise ValueError(f"format: one of {', '.join(FORMATS)}")
    rows = iter_rows(flt)
    return csv_lines(rows) if fmt == "csv" else jsonl_lines(rows)


FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILENAME_FILTER = 120


def filename(fmt: str, flt: AuditFilter | None = None, today: date | None = None) -> str:
    """``audit-<date>[-<filter>].<fmt>``: the export's date (UTC) and its filter, e.g.
    ``audit-2026-12-07-event-run.finished.csv``; only letters, digits, ``.``, ``_`` and ``-``."""
    parts = [f"{name}-{value}" for name, value in (flt.as_args() if flt is not None else {}).items()]
    described = FILENAME_UNSAFE.sub("_", "-".join(parts).replace(":", "-")).strip("._-")[:MAX_FILENAME_FILTER]
    stem = f"audit-{(today or datetime.now(UTC).date()).isoformat()}"
    return f"{stem}-{described}.{fmt}" if described else f"{stem}.{fmt}"
