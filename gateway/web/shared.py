"""Small helpers the staff pages share: who is looking, and how times and cells are shown."""

from __future__ import annotations

from datetime import datetime
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


def stamp(value: datetime | str | None) -> str:
    """A time as pages show it; also the API's ISO form (``...Z``) of a ``<run>`` view."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "" if value is None else as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    if milliseconds < 1000:
        return f"{milliseconds} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def cell_class(value: Any) -> str:
    """Numbers right-aligned, NULL distinct from an empty string."""
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "num"
    if value == "":
        return "blank"
    return ""
