"""A validation message that is English everywhere but on a page: ``Message("must be at most %(max)s", max=5)``.

A parameter's error goes to three places: the command form (in the page's language),
the JSON API's ``details`` and the ledger's ``run.rejected`` record (both English, for
machines and auditors). So a ``Message`` *is* its English text (a ``str``, like
``texts.LocalText``): JSON, the ledger, logs and the CLI see plain English, and the
English ``msgid`` and its named ``values`` ride along for the page, which translates
it at render with gettext of the same msgid (``gateway.web.paramform.shown``).
``param_message`` and ``param_counted`` build one; pybabel extracts their msgids (the Makefile's
``-k param_message -k param_counted:1,2``).
This module imports nothing of Flask: validation knows no request or language.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def number_text(value: float) -> str:
    """A number as people write it in English: 10 not 10.0 (nor 1e+06), 0.5 as 0.5."""
    return str(int(value)) if float(value).is_integer() else repr(value)


class Message(str):
    """The English text; ``msgid`` (with ``plural`` and ``amount`` for a counted one) and ``values`` for gettext."""

    msgid: str
    plural: str | None
    amount: int | None
    values: Mapping[str, Any]

    def __new__(cls, msgid: str, values: Mapping[str, Any] | None = None, plural: str | None = None,
                count: int | None = None) -> Message:  # fmt: skip
        values = dict(values or {})
        template = plural if plural is not None and count != 1 else msgid
        english = {key: number_text(value) if _is_number(value) else value for key, value in values.items()}
        text = super().__new__(cls, template % english if english or count is not None else template)
        text.msgid, text.plural, text.amount, text.values = msgid, plural, count, MappingProxyType(values)
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (Message, (self.msgid, dict(self.values), self.plural, self.amount))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def param_message(msgid: str, **values: Any) -> Message:
    """A message with named values (``%(name)s`` in the msgid)."""
    return Message(msgid, values)


def param_counted(singular: str, plural: str, count: int, **values: Any) -> Message:
    """A counted message ("needs at least 1 item" / "2 items"); ``%(num)s`` is the count."""
    return Message(singular, {"num": count, **values}, plural, count)
