"""An approver's (or requester's) comment: free text that goes into the ledger, so bounded and printable."""

from __future__ import annotations

import re
from typing import Any

from gateway.platform.phrases import N_, Phrase

MAX_COMMENT = 1000
# Controls other than TAB and line breaks (terminal escapes, NUL: PostgreSQL text cannot hold it).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class CommentError(ValueError):
    """The comment cannot be kept; ``problem`` says why (the field is ``comment``), a Phrase the pages translate."""

    def __init__(self, problem: Phrase):
        super().__init__(problem)
        self.problem = problem


def check_comment(value: Any) -> str:
    """The comment to record (surrounding blanks trimmed, ``""`` when none was given).

    :raise CommentError: not text, longer than ``MAX_COMMENT`` characters, or with control characters.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CommentError(N_("must be text"))
    text: str = value.replace("\r\n", "\n").strip()
    if len(text) > MAX_COMMENT:
        raise CommentError(N_("longer than %(limit)s characters", limit=MAX_COMMENT))
    if _CONTROL.search(text):
        raise CommentError(N_("must not contain control characters"))
    return text
