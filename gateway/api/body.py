"""Strict JSON bodies: the right content type, no duplicate keys, no unknown top-level keys, finite numbers."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request

from gateway.api.errors import ApiError


class DuplicateKey(ValueError):
    pass


class _NonFinite:
    """Stands in for NaN, Infinity or 1e400 while parsing, so the error can name where it was."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a repeated key is ambiguous (which one does the audit show?), so refuse it."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def _number(text: str) -> float | _NonFinite:
    """parse_float/parse_constant: NaN, Infinity and 1e400 are no JSON numbers (and no JSON writer takes them)."""
    number = float(text)
    return number if math.isfinite(number) else _NonFinite(text)


def _non_finite(value: Any, path: str = "") -> tuple[str, str] | None:
    """(field path, text) of the first non-finite number in a parsed body, e.g. ("params.limit", "NaN")."""
    if isinstance(value, _NonFinite):
        return path or "body", value.text
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
        if found is not None:
            return found
    return None


def parse_json_text(text: str | bytes) -> Any:
    """Decode JSON refusing duplicate keys at any depth and non-finite numbers; raises ApiError(400)."""
    try:
        body = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_number, parse_constant=_number)
        bad = _non_finite(body)
    except DuplicateKey as exc:
        raise ApiError(
            400, "validation_error", f"Duplicate key in JSON body: {exc}.", {str(exc): "duplicate key"}
        ) from None
    except (ValueError, RecursionError):
        raise ApiError(400, "validation_error", "The body is not valid JSON.", {"body": "malformed JSON"}) from None
    if bad is not None:
        field, number = bad
        raise ApiError(
            400, "validation_error", f"Numbers must be finite, got {number} in {field}.",
            {field: "must be a finite number"},
        )  # fmt: skip
    return body


def json_object_body(allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body); 415 for another content type, 400 otherwise."""
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    body = parse_json_text(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "validation_error", "The body must be a JSON object.", {"body": "must be an object"})
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400, "validation_error", f"Unknown field(s): {', '.join(unknown)}.",
            {name: "is not a known field" for name in unknown},
        )  # fmt: skip
    return body
