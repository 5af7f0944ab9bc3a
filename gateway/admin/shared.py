"""What the admin views share: who is acting, from where, and how a refused change is reported.

A refused change's reason comes from a service (``gateway.identity``) in English, as the CLI and
the API show it; ``problem_text`` words it in the page's language (``PROBLEMS``: the services'
texts as patterns, each with its msgid), and shows one it does not know as it is.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from gateway.identity.accounts import AccountError
from gateway.platform.addresses import client_address
from gateway.platform.phrases import on_page


def actor() -> dict[str, Any]:
    """The signed-in admin as the audit ledger names them."""
    return {"id": current_user.id, "name": current_user.username}


def request_fields() -> dict[str, Any]:
    """Source address and user agent, recorded with every admin change."""
    return {"source_ip": client_address() or None, "user_agent": request.headers.get("User-Agent")}


def audited() -> dict[str, Any]:
    """Keyword arguments for a service function: actor plus request fields."""
    return {"actor": actor(), **request_fields()}


def problem_on_page(problem: str, *, sentence: bool = True) -> str:
    """A service's problem (a ``Phrase``) in the page's language, ending with a full stop; as a
    sentence (capital first) or, with ``sentence=False``, as a fragment."""
    text = on_page(problem).rstrip(".")
    return (text[:1].upper() + text[1:] if sentence else text) + "."


def problem_text(exc: Exception) -> str:
    """A service error's problem without its field, as a sentence in the page's language."""
    problem = exc.problem if isinstance(exc, AccountError) else str(exc).split(": ", 1)[-1]
    return problem_on_page(problem)


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
