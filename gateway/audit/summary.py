"""What an audit event says in a few words, for the viewer's Summary column and its event filter.

``summary`` maps an event's type and detail to a short text ("alice → oncall",
"granted uptime to oncall", "disabled bob", "ran uptime: succeeded"). It reads
only named detail keys (names of users, groups, commands, schedules, outcomes),
never the params and never a whole detail, so nothing the ledger holds beyond
those names reaches the column; each name is cut to ``MAX_NAME`` characters and
the whole text to ``MAX_SUMMARY``. The text is plain: templates escape it.

Language: the texts are English msgids marked with ``N_`` (extracted, not translated here).
``summary`` and ``event_label`` take ``words`` (default ``ENGLISH``); the admin audit page
passes Flask-Babel's gettext, ngettext and number format, so its column and filter are in the page's
language, while the ledger, the exports and the API never call them with one and stay English.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.platform.phrases import N_

Translate = Callable[[str], str]


def N_plural(singular: str, plural: str) -> tuple[str, str]:
    """Marks a plural msgid pair for extraction (``make translations-extract`` knows ``N_plural:1,2``)."""
    return singular, plural


def _english(message: str) -> str:
    return message


def _english_plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


@dataclass(frozen=True)
class Words:
    """How a summary is worded: gettext, ngettext (both without placeholders filled) and a number's format."""

    translate: Translate = _english
    plural: Callable[[str, str, int], str] = _english_plural
    number: Callable[[int], str] = str


ENGLISH = Words()

MAX_NAME = 60
MAX_SUMMARY = 160

# Readable names for the event filter, by event type (the documented events).
EVENT_LABELS = {
    "auth.login": N_("Signed in"),
    "auth.login_failed": N_("Sign-in failed"),
    "auth.logout": N_("Signed out"),
    "auth.locked": N_("Sign-in locked"),
    "auth.groups_synced": N_("Groups synced at sign-in"),
    "auth.mfa_enrolled": N_("Second factor enrolled"),
    "auth.mfa_failed": N_("Second factor failed"),
    "auth.mfa_recovery_used": N_("Recovery code used"),
    "auth.mfa_removed": N_("Second factor removed"),
    "auth.password_set": N_("Password set"),
    "auth.invite_failed": N_("Invite link refused"),
    "access.denied_network": N_("Refused: network"),
    "access.denied_permission": N_("Refused: permission"),
    "access.denied_header": N_("Refused: identity header"),
    "run.started": N_("Run started"),
    "run.finished": N_("Run finished"),
    "run.rejected": N_("Run refused"),
    "run.cancel_requested": N_("Run cancel requested"),
    "run.cache_hit": N_("Run answered from cache"),
    "run.approval_requested": N_("Approval requested"),
    "run.approved": N_("Run approved"),
    "run.denied": N_("Run denied"),
    "run.approval_expired": N_("Approval expired"),
    "run.withdrawn": N_("Request withdrawn"),
    "run.approval_refused": N_("Approval action refused"),
    "admin.user_created": N_("User created"),
    "admin.user_updated": N_("User changed"),
    "admin.user_invited": N_("User invited"),
    "admin.group_created": N_("Group created"),
    "admin.group_deleted": N_("Group deleted"),
    "admin.group_member_added": N_("Member added"),
    "admin.group_member_removed": N_("Member removed"),
    "admin.grant_added": N_("Permission granted"),
    "admin.grant_removed": N_("Permission revoked"),
    "admin.command_disabled": N_("Command disabled"),
    "admin.command_enabled": N_("Command enabled"),
    "admin.idp_group_linked": N_("IdP group linked"),
    "admin.idp_group_unlinked": N_("IdP group unlinked"),
    "admin.mfa_reset": N_("Second factors reset"),
    "admin.delivery_retried": N_("Delivery retried"),
    "admin.schedule_paused": N_("Schedule paused"),
    "admin.schedule_resumed": N_("Schedule resumed"),
    "token.created": N_("Token created"),
    "token.revoked": N_("Token revoked"),
    "delivery.failed": N_("Delivery failed"),
    "delivery.dead": N_("Delivery given up"),
    "schedule.missed": N_("Schedule missed runs"),
    "audit.pruned": N_("Ledger pruned"),
    "audit.suppressed": N_("Events suppressed (flood cap)"),
    "audit.verified": N_("Chain verified"),
}
# Whole families, for the filter's "admin.*" form.
FAMILY_LABELS = {
    "admin.*": N_("Any admin change"),
    "auth.*": N_("Any sign-in event"),
    "run.*": N_("Any run event"),
    "access.*": N_("Any refusal"),
}


def event_label(event: str, words: Words = ENGLISH) -> str:
    label = EVENT_LABELS.get(event) or FAMILY_LABELS.get(event)
    return words.translate(label) if label else event


def _name(value: Any) -> str:
    """One name from the detail, as text, cut to ``MAX_NAME``; "?" when missing."""
    if value is None or isinstance(value, dict | list):
        return "?"
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# admin.user_updated with before/after: (active changed to, is_admin changed to) -> whole phrase.
USER_CHANGES = {
    (True, None): N_("enabled %(user)s"),
    (False, None): N_("disabled %(user)s"),
    (None, True): N_("made admin %(user)s"),
    (None, False): N_("removed admin from %(user)s"),
    (True, True): N_("enabled and made admin %(user)s"),
    (True, False): N_("enabled and removed admin from %(user)s"),
    (False, True): N_("disabled and made admin %(user)s"),
    (False, False): N_("disabled and removed admin from %(user)s"),
    (None, None): N_("changed %(user)s"),
}


def _user_updated(detail: Mapping[str, Any], words: Words, **_: Any) -> str:
    say = words.translate
    before, after = detail.get("before"), detail.get("after")
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        who = _name(after.get("username") or before.get("username"))
        if before.get("username") != after.get("username"):
            return say(N_("renamed %(old)s to %(user)s")) % {"old": _name(before.get("username")), "user": who}
        active = bool(after.get("active")) if before.get("active") != after.get("active") else None
        admin = bool(after.get("is_admin")) if before.get("is_admin") != after.get("is_admin") else None
        return say(USER_CHANGES[(active, admin)]) % {"user": who}
    changed = detail.get("changed")
    who = _name(detail.get("user"))
    if changed == ["password"]:
        return say(N_("set the password of %(user)s")) % {"user": who}
    if changed == ["unlocked"]:
        return say(N_("unlocked %(user)s")) % {"user": who}
    if changed == ["language"]:
        return say(N_("changed the language of %(user)s")) % {"user": who}
    return say(N_("changed %(user)s")) % {"user": who}


USER_CREATED = {
    (False, False): N_("created %(user)s"),
    (True, False): N_("created %(user)s (admin)"),
    (False, True): N_("created %(user)s with an invite"),
    (True, True): N_("created %(user)s (admin) with an invite"),
}


def _user_created(detail: Mapping[str, Any], words: Words, **_: Any) -> str:
    after = _mapping(detail.get("after"))
    phrase = USER_CREATED[(bool(after.get("is_admin")), detail.get("via") == "invite")]
    return words.translate(phrase) % {"user": _name(after.get("username"))}


def _group_deleted(detail: Mapping[str, Any], words: Words, **_: Any) -> str:
    before = _mapping(detail.get("before"))
    return words.translate(N_("deleted group %(group)s")) % {"group": _name(before.get("group"))}


def _command_disabled(detail: Mapping[str, Any], words: Words, command: str | None, **_: Any) -> str:
    if detail.get("reason"):
        phrase = words.translate(N_("disabled %(command)s: %(reason)s"))
        return phrase % {"command": _name(command), "reason": _name(detail.get("reason"))}
    return words.translate(N_("disabled %(command)s")) % {"command": _name(command)}


def _password_set(detail: Mapping[str, Any], words: Words, **_: Any) -> str:
    return words.translate(N_("set a password (invite)") if detail.get("via") == "invite" else N_("set a password"))


def _counted(forms: tuple[str, str], key: str, **names: str) -> Summariser:
    """A summariser whose ``key`` detail is a count: the plural form the language picks, the number in its format."""

    singular, plural = forms

    def describe(detail: Mapping[str, Any], words: Words, **_: Any) -> str:
        count = detail.get(key)
        values = {name: _name(detail.get(field)) for name, field in names.items()}
        if isinstance(count, bool) or not isinstance(count, int):
            return words.translate(plural) % {**values, key: _name(count)}
        return words.plural(singular, plural, count) % {**values, key: words.number(count)}

    return describe


Summariser = Callable[..., str]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _says(template: str) -> Summariser:
    """A summariser filling ``template``'s ``%(field)s``: ``command`` and ``outcome`` from the row, the rest
    from the detail's keys of those names (each through ``_name``). The template is ours (or its
    translation); values are only ever substituted, never read as a template."""
    fields = PLACEHOLDER.findall(template)

    def describe(detail: Mapping[str, Any], words: Words, *, command: str | None, outcome: str | None) -> str:
        row = {"command": command, "outcome": outcome}
        return words.translate(template) % {f: _name(row[f] if f in row else detail.get(f)) for f in fields}

    return describe


# event -> function(detail, words, command=..., outcome=...) -> text
SUMMARIES: dict[str, Summariser] = {
    "admin.group_member_added": _says(N_("%(user)s → %(group)s")),
    "admin.group_member_removed": _says(N_("%(user)s removed from %(group)s")),
    "admin.grant_added": _says(N_("granted %(command)s to %(group)s")),
    "admin.grant_removed": _says(N_("revoked %(command)s from %(group)s")),
    "admin.group_created": _says(N_("created group %(group)s")),
    "admin.group_deleted": _group_deleted,
    "admin.user_created": _user_created,
    "admin.user_updated": _user_updated,
    "admin.user_invited": _says(N_("invited %(user)s")),
    "admin.command_disabled": _command_disabled,
    "admin.command_enabled": _says(N_("enabled %(command)s")),
    "admin.idp_group_linked": _says(N_("linked %(idp_group)s to %(group)s")),
    "admin.idp_group_unlinked": _says(N_("unlinked %(idp_group)s from %(group)s")),
    "admin.mfa_reset": _says(N_("reset the second factors of %(user)s")),
    "admin.delivery_retried": _says(N_("retried delivery to %(destination)s")),
    "admin.schedule_paused": _says(N_("paused %(schedule)s")),
    "admin.schedule_resumed": _says(N_("resumed %(schedule)s")),
    "run.started": _says(N_("started %(command)s")),
    "run.finished": _says(N_("ran %(command)s: %(outcome)s")),
    "run.rejected": _says(N_("refused %(command)s: %(outcome)s")),
    "run.cancel_requested": _says(N_("asked to cancel %(command)s")),
    "run.cache_hit": _says(N_("%(command)s answered from cache")),
    "run.approval_requested": _says(N_("asked to run %(command)s")),
    "run.approved": _says(N_("approved %(command)s")),
    "run.denied": _says(N_("denied %(command)s")),
    "run.approval_expired": _says(N_("request for %(command)s expired")),
    "run.withdrawn": _says(N_("withdrew %(command)s")),
    "auth.login": _says(N_("signed in (%(method)s)")),
    "auth.login_failed": _says(N_("sign-in failed: %(outcome)s")),
    "auth.logout": _says(N_("signed out")),
    "auth.locked": _counted(
        N_plural("sign-in locked after %(failures)s failure", "sign-in locked after %(failures)s failures"), "failures"
    ),
    "auth.password_set": _password_set,
    "auth.invite_failed": _says(N_("invite link refused: %(outcome)s")),
    "auth.mfa_enrolled": _says(N_("enrolled %(factor)s")),
    "token.created": _says(N_("created token %(name)s for %(owner)s")),
    "token.revoked": _says(N_("revoked token %(prefix)s…")),
    "schedule.missed": _counted(
        N_plural("%(schedule)s missed %(count)s run", "%(schedule)s missed %(count)s runs"),
        "count",
        schedule="schedule",
    ),
    "delivery.failed": _says(N_("delivery to %(destination)s failed")),
    "delivery.dead": _says(N_("gave up delivering to %(destination)s")),
}


def summary(
    event: str, detail: Any, *, command: str | None = None, outcome: str | None = None, words: Words = ENGLISH
) -> str:
    """A short text for one event (plain; the template escapes it), at most ``MAX_SUMMARY`` characters.

    English unless ``words`` says otherwise (the admin audit page: the page's language)."""
    describe = SUMMARIES.get(event)
    detail = detail if isinstance(detail, Mapping) else {}
    if describe is not None:
        try:
            text = describe(detail, words, command=command, outcome=outcome)
        except (AttributeError, TypeError, KeyError, ValueError):  # a detail of another shape, or a bad translation
            text = ""
    else:
        text = ""
    if not text:
        label = event_label(event, words)
        # English reads as a lower-case fragment ("run started"); a translation keeps its own capitals (German nouns).
        english = label == event_label(event)
        text = label[0].lower() + label[1:] if label and english else label
        if command:
            text += f": {_name(command)}"
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"
