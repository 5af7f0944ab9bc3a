"""The ``next`` parameter: only a same-origin path is followed, anything else lands on ``/``."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(target: object, default: str = "/") -> str:
    """``target`` is whatever the request carried (a form or query value): only a same-origin path passes."""
    if not isinstance(target, str) or not target or len(target) > 2000:
        return default
    if not target.startswith("/") or target.startswith("//"):
        return default
    # Browsers treat "\" as "/", so "/\evil" is "//evil"; control characters are stripped by them.
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
