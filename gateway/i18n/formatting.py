"""Numbers in the page's language (Babel through Flask-Babel), and counted phrases whose plural the catalogue picks.

``{{ 1234567 | number }}`` is ``1,234,567`` in English and ``1.234.567`` in German.
A counted phrase goes through ``ngettext`` with the number already formatted:
the catalogue holds each language's plural forms (German and English have two;
others more), so ``count_runs(3)`` is "3 runs" or "3 Läufe".
"""

from __future__ import annotations

from numbers import Number

from flask_babel import format_decimal, ngettext


def number(value: object) -> str:
    """A number as the page's language writes it; anything else (None, text) unchanged."""
    if isinstance(value, bool) or not isinstance(value, Number):
        return "" if value is None else str(value)
    return str(format_decimal(value))


def count_runs(count: int) -> str:
    """ "1 run" / "3 runs" ("1 Lauf" / "3 Läufe"), the number in the page's format."""
    return str(ngettext("%(count)s run", "%(count)s runs", count, count=number(count)))
