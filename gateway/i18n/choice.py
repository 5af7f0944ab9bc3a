"""The page's language: the signed-in user's stored choice, else the cookie, else ``Accept-Language``, else English.

What machines read (``for_machines``: the API, Shell2HTTP, health, metrics, streams) is always
English. The cookie is for signed-out pages (the sign-in page, an invite): set only by
``POST /language``, never by a GET. A stored or cookie value that is not (or no
longer) among ``LANGUAGES`` is ignored, as is an ``Accept-Language`` naming none
of them. Outside a request (a worker rendering a delivery, the CLI) it is English.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from babel import Locale
from flask import current_app, g, has_request_context, request
from flask_babel import get_locale

from gateway.identity.redirects import safe_next

COOKIE = "gateway_language"
COOKIE_MAX_AGE = 365 * 24 * 3600


def languages() -> tuple[str, ...]:
    """The languages this deployment offers, English first (``GATEWAY_LANGUAGES``)."""
    return tuple(current_app.config["LANGUAGES"])


def stored_language() -> str | None:
    """The signed-in user's own choice, when it is still offered.

    Only a user the sign-in gate already loaded counts (Flask-Login keeps it in ``g._login_user``):
    choosing a page's language never reads the database itself, so the page saying the database is
    unreachable still renders, in the cookie's or the browser's language.
    """
    user = g.get("_login_user") if has_request_context() else None
    if user is None or not user.is_authenticated:
        return None
    chosen = getattr(user, "language", None)
    return chosen if chosen in languages() else None


# What machines read stays English whatever the caller's Accept-Language: the JSON API (and its event
# streams), the Shell2HTTP layer, health checks and metrics.
MACHINE_PREFIXES = ("/api/", "/shell2http/")
MACHINE_PATHS = frozenset({"/metrics", "/healthz", "/livez", "/readyz"})


def for_machines() -> bool:
    """True when this request is not a page a person reads (its texts stay English)."""
    path = request.path
    endpoint = request.endpoint or ""
    return (
        path.startswith(MACHINE_PREFIXES)
        or path in MACHINE_PATHS
        or path.endswith("/stream")
        or endpoint.startswith(("api.", "shell2http.", "health."))
    )


def page_language() -> str:
    """Flask-Babel's locale selector (called once per request; Flask-Babel keeps the answer)."""
    if not has_request_context() or for_machines():
        return "en"
    offered = languages()
    stored = stored_language()
    if stored is not None:
        return stored
    cookie = request.cookies.get(COOKIE)
    if cookie in offered:
        return str(cookie)
    return request.accept_languages.best_match(offered, default="en") or "en"


def current_language() -> str:
    """The language of the page being rendered (``en`` outside a request)."""
    locale = get_locale()
    return locale.language if locale is not None else "en"


@lru_cache(maxsize=32)
def language_name(code: str) -> str:
    """A language's name in itself ("Deutsch"), as language selects show them, whatever the page's language."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


def return_path() -> str:
    """Where the language switch returns: this page's path, with its ``next`` only when that is a safe one.

    Nothing else of the query is echoed into the page (a crafted link's text stays out of it).
    """
    target = request.args.get("next")
    if target is not None and safe_next(target, ""):
        return f"{request.path}?{urlencode({'next': target})}"
    return request.path


def template_values() -> dict[str, Any]:
    """``page_language`` (for ``<html lang>``), the offered languages with their names, for the selects."""
    return {
        "page_language": current_language(),
        "language_choices": [(code, language_name(code)) for code in languages()],
        "stored_language": stored_language,
        "language_return_path": return_path,
    }
