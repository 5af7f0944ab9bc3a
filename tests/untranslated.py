"""The check behind issue 23's main test: which catalogue strings a page shows untranslated.

A message of ``translations/<language>/LC_MESSAGES/messages.po`` is untranslated on
a page when its msgid (English) stands verbatim in the page's visible text
(text nodes and the attributes people read: ``title``, ``aria-label``,
``placeholder``, ``alt``, a button's ``value``) while the catalogue says the
language has another text for it, or has none (empty, or fuzzy, which
``pybabel compile`` leaves out). A ``%(name)s`` placeholder matches any word, or
a number in a plural message (its count).

Not reader text, so not checked: ``script``, ``style`` and ``template`` content; code (``code``,
``pre``, ``kbd``, ``samp``: identifiers, definitions, output); a word that is part of an
identifier (``run`` in ``run.finished``, ``default`` in ``default=2``); the ``ignore`` texts
(data the page shows as it is, like a catalogue's English command titles); and a msgid the
language itself writes (a word of some translation: German says "Link" too).
Strings not yet in the catalogue are not this check's business: extraction is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
READ_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt")
HIDDEN = ("script", "style", "template")
CODE = ("code", "pre", "kbd", "samp")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdif]")


class _VisibleText(HTMLParser):
    """The text a reader meets: text nodes outside script and style, and the read attributes."""

    def __init__(self, without_code: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self._skipped = HIDDEN + CODE if without_code else HIDDEN
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._skipped:
            self._hidden += 1
        values = dict(attrs)
        self.parts += [values[name] or "" for name in READ_ATTRIBUTES if values.get(name)]
        if tag == "input" and values.get("type") in ("submit", "button", "reset") and values.get("value"):
            self.parts.append(values["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._skipped and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str, ignore: Iterable[str] = (), without_code: bool = False) -> str:
    """The page's reader text, one line per text node or attribute; without the ``ignore`` texts (and code)."""
    parser = _VisibleText(without_code)
    parser.feed(html)
    parser.close()
    parts = [" ".join(part.split()) for part in parser.parts if part.strip()]
    known = {" ".join(text.split()) for text in ignore if text.strip()}
    words = sorted((text for text in known if " " in text), key=len, reverse=True)
    if words:  # a text of several words, wherever it stands ("Tasks by status · Ops Gateway")
        several = re.compile("|".join(rf"(?<!\w){re.escape(text)}(?!\w)" for text in words))
        parts = [several.sub(" ", part) for part in parts]
    # a single word only where it stands alone (a label), not inside a sentence
    return " \n ".join(part for part in parts if part.strip(" \u203a\u00b7:*") not in known and part.strip())


def catalogue(language: str, po_file: Path | None = None) -> Catalog:
    path = po_file or TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        return read_po(handle, locale=language)


NUMBER = r"\d[\d.,'\u00a0\u202f]*"  # a count as any language formats it


def _pattern(msgid: str, counted: bool) -> re.Pattern[str]:
    """The msgid as a regex: a placeholder is a word, or a number in a counted (plural) message ("3 runs", not "My runs")."""
    pieces = PLACEHOLDER.split(" ".join(msgid.split()))
    # split() with one group alternates text and placeholder names: keep the text, a word for each name.
    text = [re.escape(piece) for piece in pieces[::2]]
    # Not inside an identifier: run.finished, default=2.
    return re.compile(r"(?<![\w.])" + (NUMBER if counted else r"\S+").join(text) + r"(?![\w=]|\.\w)")


def untranslated(html: str, language: str, po_file: Path | None = None, ignore: Iterable[str] = ()) -> list[str]:
    """The msgids the page shows in English although the catalogue translates them (or should)."""
    text = visible_text(html, ignore, without_code=True)
    messages = [message for message in catalogue(language, po_file) if message.id]
    translations = " \n ".join(
        string
        for message in messages
        for string in (message.string if isinstance(message.string, tuple) else (message.string,))
        if string
    )
    found = []
    for message in messages:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        missing = message.fuzzy or not all(strings)
        for msgid in ids:
            pattern = _pattern(msgid, message.pluralizable)
            if (missing or msgid not in strings) and pattern.search(text) and not pattern.search(translations):
                found.append(msgid)
    return sorted(set(found))
