"""What the admin views share: who is acting, from where, and how a refused change is reported."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from gateway.platform.addresses import client_address


def actor() -> dict[str, Any]:
    """The signed-in admin as the audit ledger names them."""
    return {"id": current_user.id, "name": current_user.username}


def request_fields() -> dict[str, Any]:
    """Source address and user agent, recorded with every admin change."""
    return {"source_ip": client_address() or None, "user_agent": request.headers.get("User-Agent")}


def audited() -> dict[str, Any]:
    """Keyword arguments for a service function: actor plus request fields."""
    return {"actor": actor(), **request_fields()}


def problem_text(exc: Exception) -> str:
    """A service error's message without its ``field:`` prefix, as a sentence."""
    text = str(exc).split(": ", 1)[-1]
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def back(endpoint: str, message: str | None = None, **values: Any) -> Response:
    """Post/redirect/get: flash what happened and go back to the page the form was on."""
    if message:
        flash(message)
    return redirect(url_for(endpoint, **values), 303)
