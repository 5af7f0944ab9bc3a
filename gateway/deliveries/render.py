"""What each kind of receiver gets for a delivery: the webhook's JSON, the Slack message, the mail.

Output is data everywhere (DESIGN.md): it is placed into JSON by the encoder,
escaped for Slack (``gateway.outbound.slack``) and for HTML, and never passes
through a template engine or a shell.  A mail's headers come only from the
reviewed catalogue (the command's title, the schedule's name), the outcome
and the addresses: nothing a caller typed can add a header or a recipient.

A payload (``outbox.enqueue``) carries ``run`` (the ``<run>`` view without
output), ``excerpt``, ``schedule``, ``title`` and ``url``; an event that is not
a run's end may add ``outcome`` (what the subject says instead of the run's status).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from gateway.outbound import slack

# Control characters, and the line and paragraph separators some mail readers break headers at.
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
SUBJECT_MAX = 200


@dataclass(frozen=True)
class Summary:
    """What a human-readable message says about a delivery's cause."""

    title: str
    outcome: str
    schedule: str | None
    url: str | None
    excerpt: str
    run: Mapping[str, Any]


def summary(payload: Mapping[str, Any]) -> Summary:
    run = payload.get("run") or {}
    return Summary(
        title=str(payload.get("title") or run.get("command") or "a command"),
        outcome=str(payload.get("outcome") or run.get("status") or "unknown"),
        schedule=payload.get("schedule"),
        url=payload.get("url"),
        excerpt=str(payload.get("excerpt") or ""),
        run=run,
    )


def webhook_body(delivery_id: str, event: str, payload: Mapping[str, Any]) -> bytes:
    """``{"id", "event", "run", "excerpt", "schedule"}`` (DESIGN.md), the exact bytes that are signed and sent."""
    document = {
        "id": delivery_id,
        "event": event,
        "run": payload.get("run"),
        "excerpt": payload.get("excerpt"),
        "schedule": payload.get("schedule"),
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")


def header_text(value: str) -> str:
    """One line, no control character: a value that cannot end its header or start another."""
    return " ".join(_UNSAFE_IN_HEADER.sub(" ", value).split())


def subject(about: Summary) -> str:
    """``<title>: <outcome>`` plus the schedule's name: from the catalogue and the outcome only."""
    text = f"{header_text(about.title)}: {header_text(about.outcome)}"
    if about.schedule:
        text += f" (schedule {header_text(about.schedule)})"
    return text[:SUBJECT_MAX]


def _facts(about: Summary) -> list[tuple[str, str]]:
    run = about.run
    facts = [("Outcome", about.outcome)]
    if about.schedule:
        facts.append(("Schedule", about.schedule))
    for label, key in (("Finished", "finished_at"), ("Exit code", "exit_code"), ("Duration (ms)", "duration_ms")):
        if run.get(key) is not None:
            facts.append((label, str(run[key])))
    if run.get("error"):
        facts.append(("Error", str(run["error"])))
    return facts


def email_message(delivery_id: str, about: Summary, sender: str, recipients: list[str]) -> EmailMessage:
    """A plain-text part and an HTML part (every value escaped, the excerpt in ``<pre>``).

    The Message-ID is derived from the delivery id, so a mail sent twice (a
    worker that died after the server took it) is one message to mail readers.
    """
    message = EmailMessage()
    message["Subject"] = subject(about)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<{delivery_id}@{domain}>"
    message["X-Gateway-Delivery"] = delivery_id
    lines = [f"{about.title}: {about.outcome}", ""]
    lines += [f"{label}: {value}" for label, value in _facts(about)]
    if about.url:
        lines += ["", f"Run: {about.url}"]
    if about.excerpt:
        lines += ["", "Output (excerpt):", about.excerpt]
    message.set_content("\n".join(lines) + "\n")
    rows = "".join(
        f'<tr><th scope="row">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>'
        for label, value in _facts(about)
    )
    link = f'<p><a href="{html.escape(about.url, quote=True)}">Open the run</a></p>' if about.url else ""
    excerpt = f"<h2>Output (excerpt)</h2><pre>{html.escape(about.excerpt)}</pre>" if about.excerpt else ""
    message.add_alternative(
        f"<!DOCTYPE html><html><body><h1>{html.escape(about.title)}: {html.escape(about.outcome)}</h1>"
        f"<table>{rows}</table>{link}{excerpt}</body></html>\n",
        subtype="html",
    )
    return message


def slack_text(about: Summary) -> str:
    """Title and outcome in bold, the facts, a link to the run, the excerpt in a code block; all escaped."""
    lines = [f"*{slack.escape(about.title)}*: {slack.escape(about.outcome)}"]
    facts = [f"{slack.escape(label)}: {slack.escape(value)}" for label, value in _facts(about)[1:]]
    if facts:
        lines.append(" · ".join(facts))
    if about.url:
        # The link target is ours (PUBLIC_BASE_URL); "|" would end it early, so it is not allowed in.
        lines.append(f"<{slack.escape(about.url).replace('|', '%7C')}|Open the run>")
    if about.excerpt:
        lines.append(slack.code_block(about.excerpt))
    return "\n".join(lines)
