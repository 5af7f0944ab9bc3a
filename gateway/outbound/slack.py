"""A Slack-compatible incoming webhook: a ``text`` message, output inert inside a code block.

Slack reads ``<...>`` in a message as a link or a mention (``<!channel>``,
``<@U123>``, ``<https://evil|click>``) and ``&`` as the start of an entity, so
every ``&``, ``<`` and ``>`` coming from a run is escaped (Slack's own rule:
``&amp;``, ``&lt;``, ``&gt;``).  Output goes in a code block, and a run of
backticks inside it is broken up so the block cannot be closed early.
The URL is itself the credential: it is never logged (``post`` reports reasons only).
"""

from __future__ import annotations

import json

from gateway.outbound.http import SendResult, post

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
ZERO_WIDTH_SPACE = "\u200b"


def escape(text: str) -> str:
    """``&``, ``<``, ``>`` as Slack's entities: no link, mention or entity can come from ``text``."""
    return text.translate(_ESCAPES)


def code_block(text: str) -> str:
    """``text`` escaped inside a code block that nothing in it can end (no ````` survives)."""
    body = escape(text).replace("`", "`" + ZERO_WIDTH_SPACE)
    return "```\n" + body + "\n```"


def send(url: str, text: str, *, timeout: float, ca_file: str | None = None) -> SendResult:
    """POST ``{"text": text}`` (link previews off) to the incoming webhook ``url`` once."""
    body = json.dumps({"text": text, "unfurl_links": False, "unfurl_media": False}).encode("utf-8")
    return post(url, body, {"Content-Type": "application/json"}, timeout=timeout, ca_file=ca_file)
