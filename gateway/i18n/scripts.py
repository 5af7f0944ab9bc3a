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
    "copy.failed": _l("Press Ctrl+C to copy"),
    "confirm.cancel": _l("Cancel"),
    "confirm.confirm": _l("Confirm"),
    "audit.your_time": _l("(your time)"),
    "audit.your_time_in": _l("(your time, {zone})"),
    "choices.search": _l("Search…"),
    "choices.search_label": _l("Search the choices of {label}"),
    "choices.choose": _l("Choose…"),
    "choices.none": _l("(none)"),
    "choices.required": _l("(required)"),
    "choices.parent_first": _l("Choose {field} first."),
    "choices.above_first": _l("Choose the field above first."),
    "choices.loading": _l("Loading…"),
    "choices.truncated": _l("Only the first {count} choices are offered."),
    "choices.failed": _l("The choices could not be loaded; submit the form to try again."),
    "run.ended": _l("The run has ended: {status}."),
    "run.starting": _l("Starting…"),
    "commands.shown": _l("{shown} of {total} commands shown"),
    "invite.for": _l("You are choosing the password for {name}."),
    "passkey.unsupported": _l("This browser cannot use passkeys."),
    "passkey.waiting": _l("Waiting for your passkey…"),
    "passkey.refused": _l("The gateway refused the request ({status})."),
    "passkey.not_used": _l("No passkey was used: {reason}"),
}


def script_messages() -> dict[str, str]:
    """Key -> text in the page's language, for ``<html data-messages>``; ``status.<key>`` are the run states' names.

    The run states' names are ``gateway.web.shared.STATUS_LABELS`` (the badges' words), imported when
    rendering, so the live run page's badge says what the server's does.
    """
    from gateway.web.shared import STATUS_LABELS  # the one list of the states' names

    messages = {key: str(text) for key, text in MESSAGES.items()}
    messages.update({f"status.{key}": str(label) for key, label in STATUS_LABELS.items()})
    return messages
