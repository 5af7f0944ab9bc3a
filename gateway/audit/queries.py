"""Filtering and keyset paging over the audit ledger, shared by the admin viewer, its export and the API.

Pages are cut by ``seq`` only (``seq < cursor`` newest first, ``seq > after``
oldest first), never by OFFSET and never with a COUNT over the table, so the
next page of a million-row ledger costs what the first one does; the viewer's
match count stops at ``COUNT_CAP``. Equality
filters hit the ``(column, seq)`` indexes. Free text over ``params`` and
``detail`` is a case-insensitive LIKE over each JSON as text, which decides
what matches on both engines; a trigram index (migrations 0005, 0013) finds the
candidates: PostgreSQL's planner uses the pg_trgm GIN indexes on
``params::text`` and ``detail::text`` for the ILIKEs themselves; on SQLite the
query joins the FTS5 trigram table (both columns), walks it in
``seq`` order (FTS5 hands rowids back in order, so a page stops after
``limit`` hits) and the LIKE rechecks each candidate. Terms shorter than three
characters have no trigram and scan as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, cast, func, or_, select
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Row

from gateway.db import dialect
from gateway.db.models import AuditEvent
from gateway.platform.extensions import db
from gateway.platform.phrases import N_
from gateway.platform.timeutil import as_utc

MAX_FILTER_LENGTH = 200
COUNT_CAP = 10_000  # the viewer says "more than 10,000 events match" past this: counting stays bounded
# SQLite's FTS5 trigram index over params and detail (migrations 0005, 0013); not a model: autogenerate must not
# manage it. Matching the table's own name searches every column.
PARAMS_FTS = sql_table("audit_events_fts", sql_column("rowid"), sql_column("audit_events_fts"))
TRIGRAM = 3
# Equality filters: query-string name -> column.
EXACT_FILTERS = {
    "actor": AuditEvent.actor_name,
    "command": AuditEvent.command,
    "outcome": AuditEvent.outcome,
    "source_ip": AuditEvent.source_ip,
}
# Every column of a row, in the order exports write them.
COLUMNS = (
    AuditEvent.seq,
    AuditEvent.at,
    AuditEvent.event,
    AuditEvent.actor_id,
    AuditEvent.actor_name,
    AuditEvent.source_ip,
    AuditEvent.user_agent,
    AuditEvent.command,
    AuditEvent.run_id,
    AuditEvent.params,
    AuditEvent.outcome,
    AuditEvent.detail,
    AuditEvent.key_id,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


class FilterError(ValueError):
    """A filter value that cannot be used; ``field`` names the input."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_time(field: str, raw: str) -> datetime:
    """ISO 8601; a time without a zone (an HTML ``datetime-local`` input) is taken as UTC."""
    try:
        return as_utc(datetime.fromisoformat(raw.strip().replace("Z", "+00:00")))
    except ValueError:
        raise FilterError(field, N_("is not a date and time like 2024-05-01T12:00")) from None


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class AuditFilter:
    """What an admin is looking for. Empty fields do not filter."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    event: str | None = None
    command: str | None = None
    outcome: str | None = None
    source_ip: str | None = None
    text: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> AuditFilter:
        """Read a filter from query-string arguments; raises FilterError naming the bad field."""
        values: dict[str, Any] = {}
        for name in ("actor", "event", "command", "outcome", "source_ip", "text"):
            raw = (args.get(name) or "").strip()
            if len(raw) > MAX_FILTER_LENGTH:
                raise FilterError(name, N_("at most %(count)s characters", count=MAX_FILTER_LENGTH))
            if "\x00" in raw:
                raise FilterError(name, N_("contains a NUL character"))
            values[name] = raw or None
        for name in ("since", "until"):
            raw = (args.get(name) or "").strip()
            values[name] = parse_time(name, raw) if raw else None
        return cls(**values)

    def as_args(self) -> dict[str, str]:
        """The non-empty fields as query-string arguments (for links to the next page and the export)."""
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            out[name] = as_utc(value).strftime("%Y-%m-%dT%H:%M:%S") if isinstance(value, datetime) else value
        return out

    def apply(self, query: Select[Any]) -> Select[Any]:
        for name, column in EXACT_FILTERS.items():
            value = getattr(self, name)
            if value is not None:
                query = query.where(column == value)
        if self.event is not None:
            # "admin.*" (or "admin.") selects a whole family of events.
            if self.event.endswith("*"):
                prefix = self.event.rstrip("*")
                query = query.where(AuditEvent.event.like(_like_escape(prefix) + "%", escape="\\"))
            else:
                query = query.where(AuditEvent.event == self.event)
        if self.since is not None:
            query = query.where(AuditEvent.at >= self.since)
        if self.until is not None:
            query = query.where(AuditEvent.at < self.until)
        if self.text is not None:
            query = query.where(_text_contains(self.text))
        return query

    def keyed(self, query: Select[Any]) -> tuple[Select[Any], ColumnElement[int]]:
        """``apply``, plus the column to order and cut pages by: ``seq``, or on SQLite with free text
        the FTS table's rowid (the same number), so the index is walked in order and a page stops early."""
        query = self.apply(query)
        spellings = _spellings(self.text) if self.text is not None else []
        if (
            not spellings
            or min(map(len, spellings)) < TRIGRAM
            or not dialect.text_index_is_a_table(db.session.get_bind())
        ):
            return query, AuditEvent.__table__.c.seq
        phrases = " OR ".join('"' + s.replace('"', '""') + '"' for s in spellings)  # literal text, no operators
        query = query.join(PARAMS_FTS, PARAMS_FTS.c.rowid == AuditEvent.seq)
        return query.where(PARAMS_FTS.c.audit_events_fts.match(phrases)), PARAMS_FTS.c.rowid


def _text_contains(needle: str) -> Any:
    """Case-insensitive substring of the params or the detail JSON, as typed or as it appears JSON-escaped.

    JSON columns are written with ASCII escapes, so ``é`` or a quote sits in the
    stored text as ``\\u00e9`` or ``\\"``: matching the escaped spelling too finds them.
    The needle is a bound parameter with LIKE's ``%`` and ``_`` escaped: never SQL text.
    """
    texts = (cast(AuditEvent.params, Text), cast(AuditEvent.detail, Text))  # what the trigram indexes cover
    patterns = ["%" + _like_escape(s) + "%" for s in _spellings(needle)]
    return or_(*(text.ilike(pattern, escape="\\") for text in texts for pattern in patterns))


def _spellings(needle: str) -> list[str]:
    """The needle as typed and as it appears JSON-escaped in the stored text."""
    return sorted({needle, json.dumps(needle)[1:-1]})


def page(flt: AuditFilter, *, before_seq: int | None = None, limit: int = 50) -> tuple[list[AuditEvent], int | None]:
    """One page, newest first, starting below ``before_seq``. Returns (rows, next cursor or None)."""
    query, key = flt.keyed(select(AuditEvent))
    query = query.order_by(key.desc())
    if before_seq is not None:
        query = query.where(key < before_seq)
    rows = list(db.session.scalars(query.limit(limit + 1)))
    shown = rows[:limit]
    return shown, (shown[-1].seq if len(rows) > limit and shown else None)


def count(flt: AuditFilter, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows match, counted up to ``cap`` (a bounded subquery, never a COUNT over the whole ledger).

    Returns (count, more): ``more`` is true when at least ``cap`` + 1 rows match.
    """
    query, _ = flt.keyed(select(AuditEvent.__table__.c.seq))
    hits = db.session.scalar(select(func.count()).select_from(query.limit(cap + 1).subquery())) or 0
    return min(hits, cap), hits > cap


def iter_rows(flt: AuditFilter, *, batch: int = 500) -> Iterator[Row[Any]]:
    """Every matching row, oldest first, fetched ``batch`` rows at a time by ``seq``.

    Plain rows (no ORM objects, no identity map), and no transaction is held
    open between batches, so memory stays bounded however long the ledger is.
    """
    after = 0
    while True:
        query, key = flt.keyed(select(*COLUMNS))
        query = query.where(key > after).order_by(key).limit(batch)
        rows = db.session.execute(query).all()
        db.session.rollback()  # end the read transaction between batches
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        if len(rows) < batch:
            return


def get_event(seq: int) -> AuditEvent | None:
    return db.session.get(AuditEvent, seq)


def known_events() -> list[str]:
    """Event names for the filter's suggestions: the documented ones (no scan of the table)."""
    return sorted(
        {
            "auth.login", "auth.login_failed", "auth.logout", "auth.locked", "access.denied_network",
            "access.denied_permission", "run.started", "run.finished", "run.rejected", "run.cancel_requested",
            "run.cache_hit", "admin.user_created", "admin.user_updated", "admin.group_created",
            "admin.group_deleted", "admin.group_member_added", "admin.group_member_removed", "admin.grant_added",
            "admin.grant_removed", "admin.command_disabled", "admin.command_enabled", "token.created",
            "token.revoked", "audit.pruned", "audit.suppressed", "audit.verified", "access.denied_header",
            "auth.groups_synced", "admin.idp_group_linked", "admin.idp_group_unlinked",
            "auth.mfa_enrolled", "auth.mfa_failed", "auth.mfa_recovery_used", "auth.mfa_removed", "admin.mfa_reset",
            "run.approval_requested", "run.approved", "run.denied", "run.approval_expired", "run.withdrawn",
            "run.approval_refused",
            "delivery.failed", "delivery.dead", "admin.delivery_retried",
        }
    )  # fmt: skip
