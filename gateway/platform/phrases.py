"""English texts that a page shows in its own language while the API, the ledger and the logs keep the English.

``N_("No such run.")`` is a ``Phrase``: a ``str`` whose value is the English text
(formatted with its named values), which is what JSON answers, audit details and
log lines get; it remembers its msgid and values, so ``on_page(text)`` renders it
in the page's language. ``N_`` is one of ``pybabel extract``'s default keywords, so
the msgid reaches the catalogue. ``on_page`` of a plain string looks it up as a
msgid (a message built elsewhere from a catalogue string), else leaves it as it is.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext


class Phrase(str):
    """English text (its ``str`` value) that knows its msgid and named values."""

    msgid: str
    values: dict[str, Any]

    def __new__(cls, msgid: str, **values: Any) -> Phrase:
        phrase = super().__new__(cls, msgid % values if values else msgid)
        phrase.msgid = msgid
        phrase.values = values
        return phrase


def N_(msgid: str, **values: Any) -> Phrase:  # gettext's conventional name for "marked, not translated"
    """Mark an English text for the catalogue; it stays English until ``on_page``."""
    return Phrase(msgid, **values)


def on_page(text: str | None) -> str:
    """The text in the page's language: a ``Phrase`` by its msgid, a plain string if the catalogue knows it."""
    if not text:
        return ""
    if isinstance(text, Phrase):  # its values too, when they are phrases ("... failed a check (signature)")
        values = {name: on_page(value) if isinstance(value, Phrase) else value for name, value in text.values.items()}
        return str(gettext(text.msgid, **values))
    return str(gettext(text))
