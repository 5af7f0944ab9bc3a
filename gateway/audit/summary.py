"""What an audit event says in a few words, for the viewer's Summary column and its event filter.

``summary`` maps an event's type and detail to a short text ("alice → oncall",
"granted uptime to oncall", "disabled bob", "ran uptime: succeeded"). It reads
only named detail keys (names of users, groups, commands, schedules, outcomes),
never the params and never a whole detail, so nothing the ledger holds beyond
those names reaches the column; each name is cut to ``MAX_NAME`` characters and
the whole text to ``MAX_SUMMARY``. The text is plain: templates escape it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from string import Formatter
from typing import Any

MAX_NAME = 60
MAX_SUMMARY = 160

# Readable names for the event filter, by event type (the documented events).
EVENT_LABELS = {
    "auth.login": "Signed in",
    "auth.login_failed": "Sign-in failed",
    "auth.logout": "Signed out",
    "auth.locked": "Sign-in locked",
    "auth.groups_synced": "Groups synced at sign-in",
    "auth.mfa_enrolled": "Second factor enrolled",
    "auth.mfa_failed": "Second factor failed",
    "auth.mfa_recovery_used": "Recovery code used",
    "auth.mfa_removed": "Second factor removed",
    "auth.password_set": "Password set",
    "auth.invite_failed": "Invite link refused",
    "access.denied_network": "Refused: network",
    "access.denied_permission": "Refused: permission",
    "access.denied_header": "Refused: identity header",
    "run.started": "Run started",
    "run.finished": "Run finished",
    "run.rejected": "Run refused",
    "run.cancel_requested": "Run cancel requested",
    "run.cache_hit": "Run answered from cache",
    "run.approval_requested": "Approval requested",
    "run.approved": "Run approved",
    "run.denied": "Run denied",
    "run.approval_expired": "Approval expired",
    "run.withdrawn": "Request withdrawn",
    "run.approval_refused": "Approval action refused",
    "admin.user_created": "User created",
    "admin.user_updated": "User changed",
    "admin.user_invited": "User invited",
    "admin.group_created": "Group created",
    "admin.group_deleted": "Group deleted",
    "admin.group_member_added": "Member added",
    "admin.group_member_removed": "Member removed",
    "admin.grant_added": "Permission granted",
    "admin.grant_removed": "Permission revoked",
    "admin.command_disabled": "Command disabled",
    "admin.command_enabled": "Command enabled",
    "admin.idp_group_linked": "IdP group linked",
    "admin.idp_group_unlinked": "IdP group unlinked",
    "admin.mfa_reset": "Second factors reset",
    "admin.delivery_retried": "Delivery retried",
    "admin.schedule_paused": "Schedule paused",
    "admin.schedule_resumed": "Schedule resumed",
    "token.created": "Token created",
    "token.revoked": "Token revoked",
    "delivery.failed": "Delivery failed",
    "delivery.dead": "Delivery given up",
    "schedule.missed": "Schedule missed runs",
    "audit.pruned": "Ledger pruned",
    "audit.suppressed": "Events suppressed (flood cap)",
    "audit.verified": "Chain verified",
}
# Whole families, for the filter's "admin.*" form.
FAMILY_LABELS = {
    "admin.*": "Any admin change",
    "auth.*": "Any sign-in event",
    "run.*": "Any run event",
    "access.*": "Any refusal",
}


def event_label(event: str) -> str:
    return EVENT_LABELS.get(event) or FAMILY_LABELS.get(event) or event


def _name(value: Any) -> str:
    """One name from the detail, as text, cut to ``MAX_NAME``; "?" when missing."""
    if value is None or isinstance(value, dict | list):
        return "?"
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _user_updated(detail: Mapping[str, Any], **_: Any) -> str:
    before, after = detail.get("before"), detail.get("after")
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        who = _name(after.get("username") or before.get("username"))
        changes = []
        if before.get("active") != after.get("active"):
            changes.append("enabled" if after.get("active") else "disabled")
        if before.get("is_admin") != after.get("is_admin"):
            changes.append("made admin" if after.get("is_admin") else "removed admin from")
        if before.get("username") != after.get("username"):
            return f"renamed {_name(before.get('username'))} to {who}"
        return f"{' and '.join(changes) or 'changed'} {who}"
    changed = detail.get("changed")
    who = _name(detail.get("user"))
    if changed == ["password"]:
        return f"set the password of {who}"
    if changed == ["unlocked"]:
        return f"unlocked {who}"
    return f"changed {who}"


def _user_created(detail: Mapping[str, Any], **_: Any) -> str:
    after = _mapping(detail.get("after"))
    text = f"created {_name(after.get('username'))}"
    if after.get("is_admin"):
        text += " (admin)"
    return text + (" with an invite" if detail.get("via") == "invite" else "")


def _group_deleted(detail: Mapping[str, Any], **_: Any) -> str:
    before = _mapping(detail.get("before"))
    return f"deleted group {_name(before.get('group'))}"


Summariser = Callable[..., str]


def _says(template: str) -> Summariser:
    """A summariser filling ``template``'s fields: ``command`` and ``outcome`` from the row, the rest
    from the detail's keys of those names (each through ``_name``). The template is ours; values
    are only ever substituted, never read as a template."""
    fields = [field for _, field, _, _ in Formatter().parse(template) if field]

    def describe(detail: Mapping[str, Any], *, command: str | None, outcome: str | None) -> str:
        row = {"command": command, "outcome": outcome}
        return template.format(**{f: _name(row[f] if f in row else detail.get(f)) for f in fields})

    return describe


# event -> function(detail, command=..., outcome=...) -> text
SUMMARIES: dict[str, Summariser] = {
    "admin.group_member_added": _says("{user} → {group}"),
    "admin.group_member_removed": _says("{user} removed from {group}"),
    "admin.grant_added": _says("granted {command} to {group}"),
    "admin.grant_removed": _says("revoked {command} from {group}"),
    "admin.group_created": _says("created group {group}"),
    "admin.group_deleted": _group_deleted,
    "admin.user_created": _user_created,
    "admin.user_updated": _user_updated,
    "admin.user_invited": _says("invited {user}"),
    "admin.command_disabled": lambda d, command, **_: (
        f"disabled {_name(command)}" + (f": {_name(d.get('reason'))}" if d.get("reason") else "")
    ),
    "admin.command_enabled": _says("enabled {command}"),
    "admin.idp_group_linked": _says("linked {idp_group} to {group}"),
    "admin.idp_group_unlinked": _says("unlinked {idp_group} from {group}"),
    "admin.mfa_reset": _says("reset the second factors of {user}"),
    "admin.delivery_retried": _says("retried delivery to {destination}"),
    "admin.schedule_paused": _says("paused {schedule}"),
    "admin.schedule_resumed": _says("resumed {schedule}"),
    "run.started": _says("started {command}"),
    "run.finished": _says("ran {command}: {outcome}"),
    "run.rejected": _says("refused {command}: {outcome}"),
    "run.cancel_requested": _says("asked to cancel {command}"),
    "run.cache_hit": _says("{command} answered from cache"),
    "run.approval_requested": _says("asked to run {command}"),
    "run.approved": _says("approved {command}"),
    "run.denied": _says("denied {command}"),
    "run.approval_expired": _says("request for {command} expired"),
    "run.withdrawn": _says("withdrew {command}"),
    "auth.login": _says("signed in ({method})"),
    "auth.login_failed": _says("sign-in failed: {outcome}"),
    "auth.logout": _says("signed out"),
    "auth.locked": _says("sign-in locked after {failures} failures"),
    "auth.password_set": lambda d, **_: "set a password" + (" (invite)" if d.get("via") == "invite" else ""),
    "auth.invite_failed": _says("invite link refused: {outcome}"),
    "auth.mfa_enrolled": _says("enrolled {factor}"),
    "token.created": _says("created token {name} for {owner}"),
    "token.revoked": _says("revoked token {prefix}…"),
    "schedule.missed": _says("{schedule} missed {count} runs"),
    "delivery.failed": _says("delivery to {destination} failed"),
    "delivery.dead": _says("gave up delivering to {destination}"),
}


def summary(event: str, detail: Any, *, command: str | None = None, outcome: str | None = None) -> str:
    """A short text for one event (plain; the template escapes it), at most ``MAX_SUMMARY`` characters."""
    describe = SUMMARIES.get(event)
    detail = detail if isinstance(detail, Mapping) else {}
    if describe is not None:
        try:
            text = describe(detail, command=command, outcome=outcome)
        except (AttributeError, TypeError):  # a detail of another shape (an older writer): fall back
            text = ""
    else:
        text = ""
    if not text:
        label = event_label(event)
        text = label[0].lower() + label[1:] if label else ""
        if command:
            text += f": {_name(command)}"
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"
