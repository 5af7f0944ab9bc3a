"""The staff pages' words: ``_`` (gettext, typed) and an approval's state in the page's language.

The run engine's and the policy's refusals are ``Phrase``s (``gateway.platform.phrases``):
the pages show them with ``on_page``, the API and the ledger keep their English.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext, lazy_gettext


def _(msgid: str, **values: Any) -> str:
    """gettext as ``str`` (Flask-Babel's is untyped); pybabel extracts its msgids like gettext's."""
    return str(gettext(msgid, **values))


# An approval request's state as the run page names it (gateway.approvals: the keys stay as stored).
APPROVAL_STATES = {
    "pending": lazy_gettext("pending"),
    "approved": lazy_gettext("approved"),
    "denied": lazy_gettext("denied"),
    "expired": lazy_gettext("expired"),
    "withdrawn": lazy_gettext("withdrawn"),
}


def approval_state(state: str) -> str:
    """A template global: the state in the page's language (an unknown key as it is)."""
    return str(APPROVAL_STATES.get(state, state))
