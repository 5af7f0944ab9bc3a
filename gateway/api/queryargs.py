"""Query-string values, validated strictly: a bad value is a 400 naming the field, never a 500."""

from __future__ import annotations

import math
from datetime import datetime

from flask import request

from gateway.api.errors import ApiError
from gateway.platform.identifiers import NAME_MAX_LENGTH, is_name
from gateway.platform.timeutil import as_utc

MAX_TEXT = 200


def text_arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ApiError.invalid(name, f"must be printable text of at most {MAX_TEXT} characters")
    return value


def name_arg(name: str) -> str | None:
    """A command, group or user name (``gateway.platform.identifiers``): anything else could never match one."""
    value = text_arg(name)
    if value is not None and not is_name(value):
        raise ApiError.invalid(name, f"must be a name of at most {NAME_MAX_LENGTH} characters, without '/'")
    return value


def int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 20:
        raise ApiError.invalid(name, "must be an integer")
    number = int(value)
    if not low <= number <= high:
        raise ApiError.invalid(name, f"must be between {low} and {high}")
    return number


def number_arg(name: str, default: float, low: float, high: float) -> float:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    return check_number(name, value if len(value) < 40 else "x", low, high, parse=True)


def check_number(name: str, value: object, low: float, high: float, *, parse: bool = False) -> float:
    """A finite number in [low, high]; JSON booleans are not numbers."""
    number: float
    if parse and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ApiError.invalid(name, f"must be a number between {low:g} and {high:g}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ApiError.invalid(name, f"must be a number between {low:g} and {high:g}")
    if not math.isfinite(number) or not low <= number <= high:
        raise ApiError.invalid(name, f"must be a number between {low:g} and {high:g}")
    return number


def time_arg(name: str) -> datetime | None:
    value = text_arg(name)
    if value is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):  # overflow: 9999-12-31T23:59:59-14:00 is past the last UTC year
        raise ApiError.invalid(name, "must be an ISO 8601 time, e.g. 2025-01-31T12:00:00Z") from None
