"""UTC time helpers: aware UTC now, naive values read as UTC, the ledger's RFC 3339 form."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive values are taken as UTC (SQLite stores them that way)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z``: the audit ledger's canonical time form."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
