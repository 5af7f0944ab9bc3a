"""A catalogue text that may carry translations: ``title: Disk usage`` or ``title: {en: Disk usage, de: Plattenplatz}``.

A command's ``title``, ``description`` and ``category``, a parameter's ``label`` and
``help`` are ``LocalText``: the value *is* the English text (a ``str``), so the API, the
ledger, logs, the CLI and the definition digest see plain English as before, and
the translations ride along in ``.translations``. The mapping form needs ``en`` and
accepts only ``config.SHIPPED_LANGUAGES`` as keys, each a string; anything else
is refused naming the field. ``in_language(text, code)`` picks a translation, falling
back to English; ``localized(text)`` does so for the page being rendered
(the template filter ``localized``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from config import SHIPPED_LANGUAGES


class LocalText(str):
    """The English text, with ``translations`` (language code -> text, English aside)."""

    translations: Mapping[str, str]

    def __new__(cls, english: str, translations: Mapping[str, str] | None = None) -> LocalText:
        text = super().__new__(cls, english)
        text.translations = MappingProxyType(dict(translations or {}))
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalText, (str(self), dict(self.translations)))


def parse_text(value: Any) -> LocalText:
    """A plain string, or a mapping of language code to string with ``en`` among the keys."""
    if isinstance(value, str):
        return value if isinstance(value, LocalText) else LocalText(value)
    if not isinstance(value, Mapping):
        raise ValueError("expected a text, or a mapping from language (en, de, ...) to text")
    unknown = sorted(str(key) for key in value if key not in SHIPPED_LANGUAGES)
    if unknown:
        raise ValueError(f"unknown language {unknown[0]!r} (known: {', '.join(SHIPPED_LANGUAGES)})")
    if "en" not in value:
        raise ValueError("the English text ('en') is required: it is what every other language falls back to")
    wrong = sorted(str(key) for key, text in value.items() if not isinstance(text, str))
    if wrong:
        raise ValueError(f"the {wrong[0]!r} text must be a string")
    return LocalText(value["en"], {key: text for key, text in value.items() if key != "en"})


# The field type: validated by ``parse_text``, dumped (model_dump, the digest, JSON) as the English string.
Text = Annotated[LocalText, PlainValidator(parse_text), PlainSerializer(str, return_type=str)]


def in_language(text: str | None, language: str) -> str:
    """The text in ``language`` when the catalogue gives one, else the English (plain strings as they are)."""
    if text is None:
        return ""
    if isinstance(text, LocalText):
        return text.translations.get(language) or str(text)
    return str(text)


def localized(text: str | None) -> str:
    """The text in the language of the page being rendered (English outside a request)."""
    from flask_babel import get_locale

    locale = get_locale()
    return in_language(text, locale.language if locale is not None else "en")
