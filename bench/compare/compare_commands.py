"""The three commands every server in ``bench/compare.py`` runs, as argv lists (one source for all of them)."""

from __future__ import annotations

# seq 1 8920712 prints exactly 67 MiB (70,254,592 bytes) of short lines, from a tiny process.
BIG_LAST = 8_920_712
BIG_BYTES = 70_254_592

ARGV: dict[str, list[str]] = {
    "echo": ["echo"],  # the request's args are appended
    "nap": ["sleep", "0.2"],
    "big": ["seq", "1", str(BIG_LAST)],
}
