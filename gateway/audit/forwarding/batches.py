"""The next batch of ledger events after a cursor, each with its canonical text ready to send.

Read the way the verifier reads (``gateway.audit.stored``: stored text, one
statement, values encoded by the ledger's canonical encoder), so forwarding a
backlog costs about what verifying it does.  Each event can be sent two ways:

- ``document()``: the canonical text the row's HMAC covers (with ``prev_hash`` and
  ``seq``: ``HMAC(key, prev_hash + "\\n" + seq + "\\n" + document)``), so a receiver
  holding the audit key can recompute ``hash`` from what it got;
- ``line()``: the same object with ``hash`` added (sorted keys, no whitespace): one
  JSON line of an HTTP batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway.audit.ledger import DOCUMENT_KEYS, slot_template, sqlite_stored_at
from gateway.audit.stored import CANONICAL_KEYS, actor_text, encode_string, json_nested, json_scalar, stored_rows
from gateway.db import dialect
from gateway.platform.extensions import db

# The document's keys in the canonical text's (sorted) order; a line adds "hash" in its place.
KEYS = CANONICAL_KEYS
_HASH_AT = KEYS.index("key_id")  # "hash" sorts just before "key_id"
_DOCUMENT = slot_template(KEYS, DOCUMENT_KEYS)
_LINE = slot_template((*KEYS[:_HASH_AT], "hash", *KEYS[_HASH_AT:]), DOCUMENT_KEYS | {"hash"})


@dataclass(frozen=True, slots=True)
class ForwardedEvent:
    """One ledger row as forwarded: the continuity fields, and each document value already encoded (``KEYS`` order)."""

    seq: int
    at: str | None  # RFC 3339 UTC as the ledger writes it; None for a stored time in no such form
    event: str
    key_id: str
    prev_hash: str
    hash: str
    values: tuple[str, ...]

    def document(self) -> str:
        return _DOCUMENT % self.values

    def line(self) -> str:
        values = self.values
        return _LINE % (*values[:_HASH_AT], encode_string(self.hash), *values[_HASH_AT:])


def read(after_seq: int, limit: int, max_bytes: int) -> list[ForwardedEvent]:
    """Up to ``limit`` events after ``after_seq``, oldest first, stopping once ``max_bytes`` of text are taken.

    The first event is always taken, whatever its size.  Reads through a session
    of its own and gives its connection back before returning: nothing is held
    while the batch is sent.
    """
    events: list[ForwardedEvent] = []
    taken = 0
    params_cache: dict[str, str] = {}
    detail_cache: dict[str, str] = {}
    scalar, quote, nested = json_scalar, encode_string, json_nested
    with Session(db.engine) as session:
        sqlite = dialect.stores_text(session)
        rows = stored_rows(session, after_seq + 1, batch=limit, limit=limit)
        try:
            for partition in rows.partitions():
                for (
                    seq, at, event_name, actor_id, actor_name, source_ip, user_agent, command, run_id,
                    params, outcome, detail, key_id, prev_hash, stored_hash,
                ) in partition:  # fmt: skip
                    when = sqlite_stored_at(at) if sqlite else at
                    actor = actor_text(actor_id, actor_name)
                    nested_params, nested_detail = nested(params, params_cache), nested(detail, detail_cache)
                    values = (
                        actor, scalar(when if when is not None else at), scalar(command), nested_detail,
                        scalar(event_name), quote(key_id), scalar(outcome), nested_params, quote(prev_hash),
                        scalar(run_id), scalar(seq), scalar(source_ip), scalar(user_agent),
                    )  # fmt: skip
                    events.append(ForwardedEvent(seq, when, event_name, key_id, prev_hash, stored_hash, values))
                    taken += len(nested_params) + len(nested_detail) + 400  # the rest of a row: a few hundred bytes
                    if taken >= max_bytes:
                        return events
        finally:
            rows.close()
    return events
