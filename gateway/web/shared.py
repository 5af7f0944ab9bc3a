"""Small helpers the staff pages share: who is looking, and how times and cells are shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from flask import abort
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup

from gateway.platform.errors import error_response
from gateway.platform.phrases import N_
from gateway.platform.timeutil import as_utc

# The run states' names on pages (lazy: each renders in the page's language); the JSON API keeps the keys.
STATUS_LABELS = {
    "pending_approval": _l("Awaiting approval"),
    "queued": _l("Queued"),
    "running": _l("Running"),
    "succeeded": _l("Succeeded"),
    "failed": _l("Failed"),
    "timed_out": _l("Timed out"),
    "cancelled": _l("Cancelled"),
    "lost": _l("Lost"),
    "denied": _l("Denied"),
    "expired": _l("Expired"),
    "withdrawn": _l("Withdrawn"),
}


def badge(status: str) -> Markup:
    """A run state as the coloured badge every page shows.

    A template global rather than a macro: a macro imported by the included tile
    template had its module rendered again for every tile of the board.
    """
    label = str(STATUS_LABELS.get(status, status))
    return Markup('<span class="badge status-{0}" data-status="{0}">{1}</span>').format(status, label)


def me() -> Any:
    return current_user._get_current_object()


def refuse_cursor(field: str) -> NoReturn:
    """The 400 page naming a list's cursor parameter that no page gave (edited, cut short, made up)."""
    message = N_("The %(field)s parameter is not a position a page gave. Open the list again.", field=field)
    abort(error_response(400, message))


def status_filter(value: str | None) -> str | None:
    """A run-list page's ``status`` filter: a run state's key, or the 400 page naming the parameter."""
    if value is not None and value not in STATUS_LABELS:
        abort(error_response(400, N_("The %(field)s parameter is not a run state.", field="status")))
    return value


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
    """The server's rendering of an age, for pages read without JavaScript, in the page's language."""
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 60:
        return str(_("just now"))
    if seconds < 3600:
        return str(_("%(num)d min ago", num=seconds // 60))
    if seconds < 86400:
        return str(_("%(num)d h ago", num=seconds // 3600))
    return str(_("%(num)d d ago", num=seconds // 86400))


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
