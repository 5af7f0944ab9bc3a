"""Small helpers the staff pages share: who is looking, and how times and cells are shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask_login import current_user
from markupsafe import Markup

from gateway.platform.timeutil import as_utc

STATUS_LABELS = {
    "pending_approval": "Awaiting approval",
    "queued": "Queued",
    "running": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timed_out": "Timed out",
    "cancelled": "Cancelled",
    "lost": "Lost",
    "denied": "Denied",
    "expired": "Expired",
    "withdrawn": "Withdrawn",
}


def badge(status: str) -> Markup:
    """A run state as the coloured badge every page shows.

    A template global rather than a macro: a macro imported by the included tile
    template had its module rendered again for every tile of the board.
    """
    label = STATUS_LABELS.get(status, status)
    return Markup('<span class="badge status-{0}" data-status="{0}">{1}</span>').format(status, label)


def me() -> Any:
    return current_user._get_current_object()


def clock(value: datetime | None) -> str:
    return "" if value is None else as_utc(value).strftime("%H:%M:%S")


def _parsed(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None if value is None else as_utc(value)


def _time_element(at: datetime, show: str, text: str) -> Markup:
    iso = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{0}" data-show="{1}" title="{2}">{3}</time>').format(
        iso, show, at.strftime("%Y-%m-%d %H:%M:%S UTC"), text
    )


def stamp(value: datetime | str | None) -> Markup:
    """A moment as pages show it: a ``<time>`` the browser rewrites in the reader's local time.

    The server never guesses a time zone: without JavaScript the text stays UTC and says so.
    """
    at = _parsed(value)
    return Markup("") if at is None else _time_element(at, "local", at.strftime("%Y-%m-%d %H:%M:%S UTC"))


def ago(value: datetime | str | None, now: datetime | None = None) -> Markup:
    """A moment shown as its age ("5 min ago"), kept current by the browser; UTC in the title."""
    at = _parsed(value)
    if at is None:
        return Markup("")
    return _time_element(at, "age", age_text((now or datetime.now(UTC)) - at))


def age_text(elapsed: timedelta) -> str:
    """The server's rendering of an age, for pages read without JavaScript."""
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def duration(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    from flask_babel import format_decimal  # the page's language (the other helpers here need no Babel)

    if milliseconds < 1000:
        return f"{format_decimal(milliseconds)} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{format_decimal(seconds, format='0.0')} s"  # 1.5 s / 1,5 s; the units are the same in German
    minutes, rest = divmod(int(seconds), 60)
    return f"{format_decimal(minutes)} min {rest} s"


def cell_class(value: Any) -> str:
    """Numbers right-aligned, NULL distinct from an empty string."""
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "num"
    if value == "":
        return "blank"
    return ""
