"""One error helper with content negotiation: JSON error shape under /api/, HTML pages elsewhere.

The messages are English (``phrases.N_``) for the API and Shell2HTTP; the HTML error page shows them
in the page's language (``phrases.on_page``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, render_template, request
from flask_babel import get_locale
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

from gateway.platform.phrases import N_, on_page

if TYPE_CHECKING:
    from gateway.access.policy import Denied

log = logging.getLogger("gateway.errors")

CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}
MESSAGES = {
    400: N_("The request is not valid."),
    401: N_("Sign-in is required."),
    403: N_("You are not allowed to do this."),
    404: N_("Not found."),
    405: N_("Method not allowed."),
    413: N_("The request is too large."),
    415: N_("Unsupported content type."),
    429: N_("Too many requests. Try again later."),
    500: N_("Something went wrong on our side."),
    503: N_("The service is unavailable right now. Try again shortly."),
}


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/shell2http/"))


def wants_shell2http_shape() -> bool:
    """Flask-Shell2HTTP clients read ``{"error": "..."}``, whatever failed (404, 405, 413, 500...)."""
    return request.path.startswith("/shell2http/")


def error_response(
    status: int,
    message: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    message = message or MESSAGES.get(status, N_("Error."))
    if wants_shell2http_shape():
        response = jsonify(error=message)
    elif wants_json():
        response = jsonify(error={"code": CODES.get(status, "internal"), "message": message, "details": details or {}})
    else:
        response = Response(_error_page(status, message), mimetype="text/html")
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# The error page without the site's chrome, for when rendering the chrome is what fails.
PLAIN_PAGE = (
    '<!doctype html>\n<html lang="{language}"><head><meta charset="utf-8"><title>{status} · Ops Gateway</title></head>'
    "<body><main><h1>{status}</h1><p>{message}</p></main></body></html>\n"
)


def _error_page(status: int, message: str) -> str:
    """The error page; a plain one when the full page cannot be rendered.

    The full page shows who is signed in, which reads the database: with the
    database down (the very reason for a 503) that read fails again, and the
    caller would get a bare 500 instead of the 503 that says "try again".
    """
    shown = on_page(message)
    try:
        return render_template("error.html", status=status, message=shown)
    except Exception:
        log.warning("error page rendered without its chrome", exc_info=True)
        language = str(get_locale() or "en").split("_")[0]
        return PLAIN_PAGE.format(status=status, message=escape(shown), language=escape(language))


def handle_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    if isinstance(exc, CSRFError):
        return error_response(400, N_("The form expired or was not sent by this site. Reload the page and try again."))
    if isinstance(exc, RateLimitExceeded):
        response = error_response(429)
        retry = exc.get_response().headers.get("Retry-After")
        response.headers["Retry-After"] = retry or "60"
        return response
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return error_response(status, None if status >= 500 else MESSAGES.get(status), headers=headers)


def handle_denied(exc: Denied) -> Response:
    """The policy's refusal, in the shape of the surface that asked (HTML, API JSON, Shell2HTTP)."""
    return error_response(exc.refusal.status, exc.refusal.message)


def handle_storage_unavailable(exc: Exception) -> Response:
    """Rate-limit storage or database unreachable: fail closed with 503, never run unlimited."""
    log.error("dependency unavailable: %s", type(exc).__name__)
    return error_response(503, headers={"Retry-After": "5"})


# SQLSTATE classes that mean "the database cannot serve this now", not "the query is wrong":
# a read-only transaction (standby, frozen database), insufficient resources (disk full, out of
# memory, too many connections), operator intervention (shutdown), connection exceptions.
UNAVAILABLE_SQLSTATES = ("25006", "53", "57P", "08")


def handle_database_error(exc: Exception) -> Response:
    """A database error is a 503 when the database refuses service (e.g. writes), else a 500."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    if sqlstate.startswith(UNAVAILABLE_SQLSTATES):
        return handle_storage_unavailable(exc)
    return handle_unexpected(exc)


def handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return handle_http(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500)


def init_app(app: Flask) -> None:
    from limits.errors import StorageError
    from redis.exceptions import RedisError
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from gateway.access.policy import Denied

    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(Denied, handle_denied)
    for exc_type in (RedisError, StorageError, OperationalError, PoolTimeout, ConnectionError):
        app.register_error_handler(exc_type, handle_storage_unavailable)
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(InternalServerError, handle_unexpected)
    app.register_error_handler(Exception, handle_unexpected)
