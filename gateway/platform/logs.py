"""Structured logs: one JSON object per line, each carrying the request id of the request it belongs to.

Every request gets an id, echoed in the ``X-Request-ID`` response header so a
user's report can be matched to the log lines. An incoming ``X-Request-ID`` is
kept only behind trusted proxies (``TRUSTED_PROXY_COUNT`` > 0, i.e. a load
balancer that sets it) and only if it matches a strict pattern: anything else
could forge or inject log content, so a fresh id is generated instead.

JSON output is switched on in production only, by adding one handler to the
root logger; handlers others installed (pytest's log capture) stay untouched.
Nothing here logs request bodies, query strings or headers, so passwords,
tokens and ``?key=`` secrets never reach the log.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from typing import Any, TextIO

from flask import Flask, Response, current_app, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,63}")
ANCHOR_LOGGER = "gateway.audit.anchor"
access_log = logging.getLogger("gateway.access")

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def new_request_id() -> str:
    return secrets.token_hex(16)


def request_id() -> str | None:
    """This request's id (decided once, on first use); ``None`` outside a request."""
    if not has_request_context():
        return None
    existing: str | None = g.get("request_id")
    if existing is None:
        existing = _trusted_incoming_id() or new_request_id()
        g.request_id = existing
    return existing


def _trusted_incoming_id() -> str | None:
    if not current_app.config.get("TRUSTED_PROXY_COUNT"):
        return None
    value = request.headers.get(REQUEST_ID_HEADER, "")
    return value if REQUEST_ID_PATTERN.fullmatch(value) else None


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id, then any ``extra=`` fields; exceptions as text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id(),
        }
        if record.name == ANCHOR_LOGGER:
            entry["anchor"] = _json_or_none(entry["message"])
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class _JsonStderrHandler(logging.StreamHandler[TextIO]):
    """The gateway's own handler, recognisable so configuring twice does not log every line twice."""


def configure_json_logging(level: int = logging.INFO) -> logging.Handler:
    """Send the root logger's records to stderr as JSON lines; idempotent (one handler per process)."""
    root = logging.getLogger()
    for existing in root.handlers:
        if isinstance(existing, _JsonStderrHandler):
            return existing
    handler = _JsonStderrHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    return handler


def _stamp_request() -> None:
    g.request_started = time.perf_counter()
    request_id()


# C0 and C1 control characters (a decoded path may hold %0A): a text log line must stay one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def _finish_request(response: Response) -> Response:
    """Echo the id and write the request's one access line (path without its query string: it may carry a key).

    The message itself says what happened (``GET /runs 200 3.2ms``), so the
    line reads the same as text in development as it does as JSON (where the
    fields are also separate); no server's own access line is needed beside it.
    """
    response.headers[REQUEST_ID_HEADER] = request_id() or new_request_id()
    started = g.get("request_started")
    path = request.path[:200]
    duration_ms = None if started is None else round((time.perf_counter() - started) * 1000, 3)
    access_log.info(
        "%s %s %s %sms",
        _printable(request.method[:20]),
        _printable(path),
        response.status_code,
        "-" if duration_ms is None else f"{duration_ms:.1f}",
        extra={
            "method": request.method,
            "path": path,
            "route": request.url_rule.rule if request.url_rule is not None else None,
            "status": response.status_code,
            "duration_ms": duration_ms,
        },
    )
    return response


def init_app(app: Flask) -> None:
    """Request ids for every app; JSON lines on stderr when serving in production."""
    app.before_request(_stamp_request)
    app.after_request(_finish_request)
    if app.config.get("GATEWAY_ENV") == "production":
        configure_json_logging()
