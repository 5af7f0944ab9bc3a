"""English texts that a page shows in its own language while the API, the ledger and the logs keep the English.

``N_("No such run.")`` is a ``Phrase``: a ``str`` whose value is the English text
(formatted with its named values, numbers as English writes them: 10, not 10.0),
which is what JSON answers, audit details, log lines and the CLI get; it remembers
its msgid, plural and values, so ``on_page(text)`` renders it in the page's
language, numbers included (0,5 in German). ``N_`` is one of ``pybabel extract``'s
default keywords and the Makefile adds ``N_counted:1,2``, so the msgids reach the
catalogue. ``on_page`` of a plain string looks it up as a msgid (a message built
elsewhere from a catalogue string), else leaves it as it is. Validation uses the
same phrases (a parameter's error: German on the form, English in the API's answer
and the ``run.rejected`` record); building one needs no request.

A phrase kept for later (a run's recorded error, ``runs.error_phrase``) is stored as
JSON by ``stored_form`` and rebuilt by ``Phrase.from_stored``: the English column stays
what machines read, the stored form is only what a page needs to say it again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from babel.numbers import format_decimal
from flask_babel import get_locale, get_translations, gettext

# A stored text value (a data source's or the OS's own words inside a recorded error) is cut to this
# many characters: the English column keeps the whole text, a page shows at most this much of it.
STORED_TEXT_CHARS = 1000
CUT = "…"
_PLACEHOLDER = re.compile(r"%\(\w+\)")


def number_text(value: float) -> str:
    """A number as people write it in English: 10 not 10.0 (nor 1e+06), 0.5 as 0.5."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Phrase(str):
    """The English text; ``msgid`` (with ``plural`` and ``amount`` for a counted one) and ``values`` for gettext."""

    msgid: str
    plural: str | None
    amount: int | None
    values: Mapping[str, Any]

    def __new__(cls, msgid: str, values: Mapping[str, Any] | None = None, plural: str | None = None,
                count: int | None = None) -> Phrase:  # fmt: skip
        values = dict(values or {})
        template = plural if plural is not None and count != 1 else msgid
        english = {key: number_text(value) if _is_number(value) else value for key, value in values.items()}
        phrase = super().__new__(cls, template % english if english or count is not None else template)
        phrase.msgid, phrase.plural, phrase.amount, phrase.values = msgid, plural, count, MappingProxyType(values)
        return phrase

    def __reduce__(self) -> tuple[Any, ...]:
        return (Phrase, (self.msgid, dict(self.values), self.plural, self.amount))

    def stored(self) -> dict[str, Any]:
        """The phrase as JSON holds it: ``msgid``, ``values`` (texts, numbers, a nested phrase as its own
        stored form), ``plural`` and ``amount``; texts cut to ``STORED_TEXT_CHARS``."""
        values = {str(name): _stored_value(value) for name, value in self.values.items()}
        return {"msgid": self.msgid, "values": values, "plural": self.plural, "amount": self.amount}

    @classmethod
    def from_stored(cls, data: Any) -> Phrase:
        """The phrase ``stored()`` wrote; ``ValueError`` when ``data`` is not such a form or does not fit its msgid."""
        if not isinstance(data, Mapping) or not isinstance(data.get("msgid"), str):
            raise ValueError("not a stored phrase")
        values, plural, amount = data.get("values") or {}, data.get("plural"), data.get("amount")
        if not isinstance(values, Mapping) or not (plural is None or isinstance(plural, str)):
            raise ValueError("not a stored phrase")
        if not (amount is None or (isinstance(amount, int) and not isinstance(amount, bool))):
            raise ValueError("not a stored phrase")
        rebuilt = {str(name): _rebuilt_value(value) for name, value in values.items()}
        if not rebuilt and amount is None and _PLACEHOLDER.search(data["msgid"]):
            raise ValueError("stored values do not fit the phrase: it has placeholders and no values")
        try:
            return cls(data["msgid"], rebuilt, plural, amount)
        except (KeyError, TypeError, ValueError) as exc:  # values that do not fill the msgid
            raise ValueError(f"stored values do not fit the phrase: {exc}") from None


def _stored_value(value: Any) -> Any:
    if isinstance(value, Phrase):
        return value.stored()
    if _is_number(value) and (isinstance(value, int) or math.isfinite(value)):
        return value
    text = number_text(value) if _is_number(value) else str(value)  # inf and nan as English writes them
    return text if len(text) <= STORED_TEXT_CHARS else text[: STORED_TEXT_CHARS - len(CUT)] + CUT


def _rebuilt_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Phrase.from_stored(value)
    if isinstance(value, str) or _is_number(value):
        return value
    raise ValueError("a stored value is neither a text, a number nor a phrase")


def stored_form(text: str | None) -> dict[str, Any] | None:
    """What a page needs to show ``text`` in its language later: a Phrase's stored form, None for a plain text."""
    return text.stored() if isinstance(text, Phrase) else None


def restored(text: str | None, stored: Any) -> str:
    """``text`` as the phrase ``stored_form`` kept beside it; ``text`` itself if none was kept or it no longer fits."""
    if stored is not None:
        try:
            return Phrase.from_stored(stored)
        except ValueError:
            pass
    return text or ""


def N_(msgid: str, **values: Any) -> Phrase:  # gettext's conventional name for "marked, not translated"
    """Mark an English text for the catalogue; it stays English until ``on_page``."""
    return Phrase(msgid, values)


def N_counted(singular: str, plural: str, count: int, **values: Any) -> Phrase:
    """A counted phrase ("needs at least 1 item" / "2 items"); ``%(num)s`` is the count."""
    return Phrase(singular, {"num": count, **values}, plural, count)


def page_number(value: Any) -> Any:
    """A number as the page's language writes it (0,5 in German), ungrouped as a form's min/max are; else as it is."""
    if _is_number(value):
        return format_decimal(value, locale=get_locale(), group_separator=False, decimal_quantization=False)
    return value


def _page_value(value: Any) -> Any:
    return on_page(value) if isinstance(value, Phrase) else page_number(value)


def on_page(text: str | None) -> str:
    """The text in the page's language: a ``Phrase`` by its msgid, a plain string if the catalogue knows it."""
    if not text:
        return ""
    if not isinstance(text, Phrase):
        return str(gettext(text))
    values = {name: _page_value(value) for name, value in text.values.items()}
    if text.plural is not None and text.amount is not None:
        # Flask-Babel's ngettext would format the count itself: the catalogue's own, with the page's numbers.
        return str(get_translations().ungettext(text.msgid, text.plural, text.amount) % values)
    return str(gettext(text.msgid, **values))
