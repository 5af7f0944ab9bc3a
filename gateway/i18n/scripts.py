"""The strings the small scripts in ``gateway/static`` show, translated by the server.

The scripts carry no catalogue of their own: the page's ``<html>`` element
carries ``data-messages``, a JSON object from key to text in the page's
language (``script_messages()``), and ``gateway/static/i18n.js`` gives scripts
``GatewayI18n.text(key, fallback, values)`` (``{name}`` placeholders filled
from ``values``). A string tied to one element can instead travel in a data
attribute of that element, rendered with ``_()`` (as ``copy.js`` reads
``data-copied``). Both ways, ``pybabel extract`` finds the strings in Python
and templates: there is no JavaScript extraction.

A new script string: one entry below (its text in ``lazy_gettext``), then
``make translations-update`` and its German in the ``.po``.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

MESSAGES = {
    "copy.copied": _l("Copied"),
}


def script_messages() -> dict[str, str]:
    """Key -> text in the page's language, for ``<html data-messages>``."""
    return {key: str(text) for key, text in MESSAGES.items()}
