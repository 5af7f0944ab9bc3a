"""Strict JSON bodies: the right content type, no duplicate keys, no unknown top-level keys, finite numbers."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request

from gateway.api.errors import ApiError


class DuplicateKey(ValueError):
    pass


class NotFinite(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a repeated key is ambiguous (which one does the audit show?), so refuse it."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def _finite(text: str) -> float:
    """parse_float/parse_constant: NaN, Infinity and 1e400 are no JSON numbers (and no JSON writer takes them)."""
    number = float(text)
    if not math.isfinite(number):
        raise NotFinite(text)
    return number


def parse_json_text(text: str | bytes) -> Any:
    """Decode JSON refusing duplicate keys at any depth and non-finite numbers; raises ApiError(400)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_finite, parse_constant=_finite)
    except DuplicateKey as exc:
        raise ApiError(
            400, "validation_error", f"Duplicate key in JSON body: {exc}.", {str(exc): "duplicate key"}
        ) from None
    except NotFinite as exc:
        raise ApiError(
            400, "validation_error", f"Numbers must be finite, got {exc}.", {"body": "non-finite number"}
        ) from None
    except (ValueError, RecursionError):
        raise ApiError(400, "validation_error", "The body is not valid JSON.", {"body": "malformed JSON"}) from None


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
