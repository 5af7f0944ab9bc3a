"""What the admin views share: who is acting, from where, and how a refused change is reported.

A refused change's reason comes from a service (``gateway.identity``) in English, as the CLI and
the API show it; ``problem_text`` words it in the page's language (``PROBLEMS``: the services'
texts as patterns, each with its msgid), and shows one it does not know as it is.
"""

from __future__ import annotations

import re
from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from gateway.platform.addresses import client_address
from gateway.platform.phrases import N_


def actor() -> dict[str, Any]:
    """The signed-in admin as the audit ledger names them."""
    return {"id": current_user.id, "name": current_user.username}


def request_fields() -> dict[str, Any]:
    """Source address and user agent, recorded with every admin change."""
    return {"source_ip": client_address() or None, "user_agent": request.headers.get("User-Agent")}


def audited() -> dict[str, Any]:
    """Keyword arguments for a service function: actor plus request fields."""
    return {"actor": actor(), **request_fields()}


# The services' refusals (English, the CLI's and the API's words) as patterns -> their msgid (the same
# English text, a ``%(name)s`` for each of the pattern's groups), a fragment as the services word it.
PROBLEMS = [
    (r"no user (?P<name>.+)", N_("no user %(name)s")),
    (r"(?P<name>.+) already exists", N_("%(name)s already exists")),
    (r"no group (?P<name>.+)", N_("no group %(name)s")),
    (r"no command (?P<name>.+) in the catalogue", N_("no command %(name)s in the catalogue")),
    (r"(?P<name>.+) signs in through (?P<source>\w+); it has no local password",
     N_("%(name)s signs in through %(source)s; it has no local password")),
    (r"(?P<name>.+) has no second factor to reset", N_("%(name)s has no second factor to reset")),
    (r"you cannot reset your own password here \(use your account page\)",
     N_("you cannot reset your own password here (use your account page)")),
    (r"you cannot reset your own password by invite \(use your account page\)",
     N_("you cannot reset your own password by invite (use your account page)")),
    (r"you cannot disable your own account \(ask another admin\)",
     N_("you cannot disable your own account (ask another admin)")),
    (r"cannot disable the last active admin", N_("cannot disable the last active admin")),
    (r"you cannot revoke your own admin rights \(ask another admin\)",
     N_("you cannot revoke your own admin rights (ask another admin)")),
    (r"cannot revoke admin from the last active admin", N_("cannot revoke admin from the last active admin")),
    (r"you cannot reset your own second factors here \(ask another admin\)",
     N_("you cannot reset your own second factors here (ask another admin)")),
    (r"use 1-100 of a-z, 0-9, '\.', '_' or '-'", N_("use 1-100 of a-z, 0-9, '.', '_' or '-'")),
    (r"use 1-64 of a-z, 0-9, '\.', '_' or '-', starting with a letter or digit",
     N_("use 1-64 of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")),
    (r"contains control characters", N_("contains control characters")),
    (r"must not contain control characters", N_("must not contain control characters")),
    (r"must be at least (?P<num>\d+) characters", N_("must be at least %(num)s characters")),
    (r"must be at most (?P<num>\d+) characters", N_("must be at most %(num)s characters")),
    (r"use 1-(?P<num>\d+) characters", N_("use 1-%(num)s characters")),
]  # fmt: skip
_PROBLEM_PATTERNS = [(re.compile(pattern), msgid) for pattern, msgid in PROBLEMS]


def problem_on_page(problem: str, *, sentence: bool = True) -> str:
    """A service's English problem in the page's language (one it does not know as it is), ending
    with a full stop; as a sentence (capital first) or, with ``sentence=False``, as a fragment."""
    text = problem.rstrip(".")
    for pattern, msgid in _PROBLEM_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            text = _(msgid, **match.groupdict())
            break
    return (text[:1].upper() + text[1:] if sentence else text) + "."


def problem_text(exc: Exception) -> str:
    """A service error's message without its ``field:`` prefix, as a sentence in the page's language."""
    return problem_on_page(str(exc).split(": ", 1)[-1])


def back(endpoint: str, message: str | None = None, **values: Any) -> Response:
    """Post/redirect/get: flash what happened and go back to the page the form was on."""
    if message:
        flash(message)
    return redirect(url_for(endpoint, **values), 303)


# --- confirm what destroys, undo what can be undone -------------------------------------------
#
# A destructive browser form is answered twice. The first POST (no ``confirm`` field) changes
# nothing and shows "Really ...? [Disable] [Cancel]" (templates/confirm.html): the same form
# again, carrying ``confirm=yes``. With JavaScript, gateway/static/admin.js asks in a dialog and
# sends ``confirm=yes`` at once. The CLI and the JSON API call the services directly and are
# not affected.
#
# An Undo is a POST form to the inverse route (enable, add member, grant), so it is checked and
# audited by the same code as any other change. What it should offer is held in the session
# (signed) until the next admin page shows it.

CONFIRM_FIELD = "confirm"
UNDO_KEY = "admin_undo"


def confirmed() -> bool:
    """True when the form carries the confirmation (second step, or the JavaScript dialog)."""
    return request.form.get(CONFIRM_FIELD) == "yes"


def confirm_page(
    question: str, button: str, *, cancel: str, note: str | None = None, keep: tuple[str, ...] = ()
) -> tuple[str, int]:
    """The confirmation step: the same form (its ``keep`` fields) with ``confirm=yes``; nothing changed yet."""
    endpoint = request.endpoint or ""
    fields = [(name, request.form.get(name, "")) for name in keep]
    page = render_template(
        "confirm.html",
        question=question,
        note=note,
        button=button,
        action=url_for(endpoint, **(request.view_args or {})),
        fields=fields,
        cancel=cancel,
        admin=endpoint.startswith("admin."),
    )
    return page, 200


def back_to(endpoint: str, message: str | None = None, *, anchor: str | None = None, **values: Any) -> Response:
    """Like ``back``, to the row the form was on (``#anchor``); admin.js puts the focus back on it."""
    if message:
        flash(message)
    return redirect(url_for(endpoint, _anchor=anchor, **values), 303)


def back_with_undo(
    endpoint: str,
    message: str,
    *,
    undo: str,
    undo_label: str,
    undo_values: dict[str, Any] | None = None,
    undo_fields: dict[str, str] | None = None,
    anchor: str | None = None,
    **values: Any,
) -> Response:
    """Go back to the row, with ``message`` and an Undo button (a POST to the ``undo`` endpoint)."""
    session[UNDO_KEY] = {
        "page": endpoint,
        "page_values": values,
        "message": message,
        "endpoint": undo,
        "values": undo_values or {},
        "fields": undo_fields or {},
        "label": undo_label,
    }
    return redirect(url_for(endpoint, _anchor=anchor, **values), 303)


def take_undo() -> dict[str, Any] | None:
    """The pending Undo, once, on the page it was meant for (elsewhere it is dropped)."""
    held = session.pop(UNDO_KEY, None)
    if not isinstance(held, dict) or held.get("page") != request.endpoint:
        return None
    if held.get("page_values", {}) != (request.view_args or {}):
        return None
    return held
