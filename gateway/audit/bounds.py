"""What the ledger keeps of values a caller chooses: always bounded, so no request can grow it without limit.

A refused request may carry megabytes: thousands of invented parameter names, huge values.
Its row keeps the first ``NAMES_KEPT`` names of each object, cut to ``NAME_CHARS``
characters, plus a count of the rest under ``MORE``; strings cut to ``VALUE_CHARS``; and
``refusal()`` shrinks further until the row's params + detail, as stored, stay under
``REFUSAL_ROW_BYTES``.  Single-line texts a caller sends (user agents, upload file names,
names typed at sign-in) lose control characters and are cut by ``caller_text()``.

Accepted runs record their params in full: the catalogue's limits bound those.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

NAMES_KEPT = 20
NAME_CHARS = 64
VALUE_CHARS = 256
DEPTH = 3
REFUSAL_ROW_BYTES = 16 * 1024
FILE_NAME_CHARS = 255
# The key that carries how many entries of an object were left out (no catalogue param can be named so).
MORE = "(more)"
CUT = "…"

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belongs in a one-line text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Passes of refusal(): (name characters, string characters, depth), each smaller than the last.
_PASSES = ((NAME_CHARS, VALUE_CHARS, DEPTH), (32, 32, 2), (16, 0, 1))


def caller_text(value: str | None, limit: int = NAME_CHARS) -> str | None:
    """A one-line text a caller chose, fit for a ledger column: no control characters, at most ``limit`` long."""
    if value is None:
        return None
    # Bounded work whatever the input: only the head can survive the cut anyway.
    head = value[: limit + 1024]
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", head))[:limit]


def bounded(value: Any, *, name_chars: int = NAME_CHARS, value_chars: int = VALUE_CHARS, depth: int = DEPTH) -> Any:
    """``value`` with every object cut to its first ``NAMES_KEPT`` entries (+ a count), strings and depth cut.

    Strings keep what was sent (control characters included: JSON stores them escaped and
    inert) up to ``value_chars``, then end in ``CUT``.
    """
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else _cut(str(value), value_chars)
    if isinstance(value, str):
        return _cut(value, value_chars)
    if isinstance(value, Mapping):
        if depth <= 0:
            return f"<object of {len(value)}>"
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if len(kept) == NAMES_KEPT:
                break
            name = caller_text(str(key), name_chars) or ""
            if name != MORE and name not in kept:
                kept[name] = bounded(item, name_chars=name_chars, value_chars=value_chars, depth=depth - 1)
        if len(value) > len(kept):
            kept[MORE] = len(value) - len(kept)
        return kept
    if isinstance(value, list | tuple):
        if depth <= 0:
            return f"<list of {len(value)}>"
        items = [
            bounded(item, name_chars=name_chars, value_chars=value_chars, depth=depth - 1)
            for item in value[:NAMES_KEPT]
        ]
        if len(value) > NAMES_KEPT:
            items.append({MORE: len(value) - NAMES_KEPT})
        return items
    return f"<{type(value).__name__}>"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + CUT


def stored_bytes(value: Any) -> int:
    """Bytes a JSON column holds for ``value`` (SQLAlchemy's JSON type stores ``json.dumps`` with its defaults)."""
    return len(json.dumps(value, default=str).encode("utf-8"))


def refusal(params: Any, detail: Any) -> tuple[Any, Any]:
    """``params`` and ``detail`` of a refused request, bounded so that together they stay under 16 KB as stored.

    The first pass keeps what a reader needs (20 names of 64 characters, strings of 256);
    pathological input (every character escaped to twelve bytes) is shrunk in further
    passes, and past those only the fact remains.
    """
    for name_chars, value_chars, depth in _PASSES:
        kept = (
            bounded(params, name_chars=name_chars, value_chars=value_chars, depth=depth),
            bounded(detail, name_chars=name_chars, value_chars=value_chars, depth=depth),
        )
        if stored_bytes(kept[0]) + stored_bytes(kept[1]) < REFUSAL_ROW_BYTES:
            return kept
    return None, {"truncated": True}
