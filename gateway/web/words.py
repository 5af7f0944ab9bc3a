"""The staff pages' words: ``_`` (gettext, typed), an engine's message and an approval's state in the page's language.

The run engine and the policy refuse with English messages (``RunRejected.message``,
``Refusal.message``): the JSON API answers with them and the ledger records them.
The staff pages show the same refusal in the page's language by looking the English
up in the catalogue: ``KNOWN`` lists the engine's fixed messages (``N_`` only marks
them for extraction; its text must stay the engine's, word for word). A message
with a run-time part ("This command is unavailable: <why>.") is translated around
that part, which stays as the engine wrote it; anything else is shown as it is.
"""

from __future__ import annotations

import re
from typing import Any

from flask_babel import gettext, lazy_gettext

from gateway.platform.phrases import N_


def _(msgid: str, **values: Any) -> str:
    """gettext as ``str`` (Flask-Babel's is untyped); pybabel extracts its msgids like gettext's."""
    return str(gettext(msgid, **values))


KNOWN = frozenset(
    {
        N_("No such command."),
        N_("No such run."),
        N_("Nobody may approve or deny their own request."),
        N_("You are not an approver of this command."),
        N_("Only the requester may withdraw a request."),
        N_("This command is disabled by an administrator."),
        N_("This replica is shutting down; try again."),
        N_("This replica is shutting down."),
        N_("Some parameters are not valid."),
        N_("You have run this command too often; wait a little."),
        N_("Too many of your requests were refused; wait a little."),
        N_("Too many refused run requests; try again later."),
        N_("The gateway cannot record this run right now; nothing was run."),
        N_("The gateway cannot record this decision right now."),
        N_("The gateway cannot record this request right now."),
        N_("The audit ledger is unavailable; nothing was run."),
        N_("The audit ledger is unavailable; nothing was decided."),
        N_("The rate-limit storage is unavailable; nothing was run."),
        N_("The run is waiting for approval; its requester may withdraw it."),
        # A run's recorded error (runs.error), shown on its page.
        N_("Withdrawn by its requester."),
        N_("internal error: the run has nothing to execute"),
        N_("the gateway shut down before the run began"),
        N_("internal error in the gateway"),
        N_("cancelled before it started"),
        N_("the worker running it stopped (lease expired)"),
    }
)  # tests/test_i18n_staff.py checks each still stands in gateway/runs or gateway/access
UNAVAILABLE = re.compile(r"This command is unavailable: (?P<reason>.+)\.", re.DOTALL)
CONCURRENCY = re.compile(
    r"This command is already running (?P<count>\d+) time\(s\), its limit; try again when one finishes\."
)
ENDED = re.compile(r"The run has already ended \((?P<status>\w+)\)\.")
DECIDED = re.compile(r"This request was already decided \((?P<status>\w+)\)\.")
DENIED_BY = re.compile(r"Denied by (?P<user>.+)\.", re.DOTALL)
NOT_STARTED = re.compile(r"Approved, but not started: (?P<reason>.+)", re.DOTALL)


def page_message(message: str) -> str:
    """``message`` (the engine's English) in the page's language, as far as the catalogue knows it."""
    if message in KNOWN:
        return str(gettext(message))
    if match := UNAVAILABLE.fullmatch(message):
        return unavailable(match["reason"])
    if match := CONCURRENCY.fullmatch(message):
        count = int(match["count"])
        return str(
            gettext(
                "This command is already running %(count)s time(s), its limit; try again when one finishes.",
                count=count,
            )
        )
    if match := ENDED.fullmatch(message):
        return str(gettext("The run has already ended (%(status)s).", status=match["status"]))
    if match := DECIDED.fullmatch(message):
        return str(gettext("This request was already decided (%(status)s).", status=match["status"]))
    if match := DENIED_BY.fullmatch(message):
        return _("Denied by %(user)s.", user=match["user"])
    if match := NOT_STARTED.fullmatch(message):
        return _("Approved, but not started: %(reason)s", reason=page_message(match["reason"]))
    return message


def unavailable(reason: str) -> str:
    return str(gettext("This command is unavailable: %(reason)s.", reason=reason))


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
