"""The flood gate: refusals, failed sign-ins and network denials cost the ledger a few rows, not millions.

Every event written for a refused request goes through ``record_capped``: at most
``AUDIT_FLOOD_PER_MINUTE`` rows per caller and reason a minute, each bounded in
size (``gateway.audit.bounds``); what the cap leaves out is summarised as
``audit.suppressed``.  May import the ledger and ``bounds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app

from gateway.audit import bounds
from gateway.audit.ledger import SUPPRESSED_EVENT, LedgerRow, append, request_context_fields
from gateway.db.units import WriteUnit, write_transaction
from gateway.platform.timeutil import rfc3339

FLOOD_KEYS_MAX = 1024
_OVERFLOW = "*"


@dataclass
class _Tally:
    """One (event, caller, reason) in the current minute: how many came, how many were left out, and who."""

    seen: int = 0
    suppressed: int = 0
    actor: Mapping[str, Any] | None = None
    source_ip: str | None = None


def _flood_key(event_name: str, fields: Mapping[str, Any]) -> tuple[tuple[str, str, str], str]:
    """(key, scope): per actor when the event has one with an id, else per source address."""
    actor = fields.get("actor")
    reason = str(fields.get("outcome") or "")[:32]
    if isinstance(actor, Mapping) and actor.get("id") is not None:
        return (event_name, f"actor:{actor['id']}", reason), "actor"
    return (event_name, f"address:{fields.get('source_ip') or ''}", reason), "address"


class FloodGate:
    """Caps noisy events (refusals, login failures, network denials) per caller and reason per minute.

    A caller is the event's actor (a user id) or, without one, its source address, so one
    caller's flood cannot use up the cap another caller's events need.  Past the cap nothing
    is written for that caller and reason that minute; what was left out is written as one
    ``audit.suppressed`` event per caller and reason when the next capped event arrives in a
    later minute, so a flood costs a few rows, not millions.  The gate itself tracks at most
    ``max_keys`` callers a minute: past that (an attacker rotating addresses or names), new
    callers share one key per event and reason (a fixed set in the code), counted and
    summarised together.
    """

    def __init__(self, per_minute: int, max_keys: int = FLOOD_KEYS_MAX):
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._window = self._current_window()
        self._tallies: dict[tuple[str, str, str], _Tally] = {}

    @staticmethod
    def _current_window() -> int:
        return int(time.time() // 60)

    def __len__(self) -> int:
        return len(self._tallies)

    def admit(self, event_name: str, fields: Mapping[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
        """Whether to write this event, and ``append()`` fields of earlier minutes' summaries to write first."""
        key, scope = _flood_key(event_name, fields)
        with self._lock:
            summaries = self._roll()
            tally = self._tallies.get(key)
            if tally is None and len(self._tallies) >= self.max_keys:
                key, scope = (event_name, _OVERFLOW, key[2]), "overflow"
                tally = self._tallies.setdefault(key, _Tally())
            elif tally is None:
                actor = fields.get("actor") if scope == "actor" else None
                tally = self._tallies[key] = _Tally(actor=actor, source_ip=fields.get("source_ip"))
            tally.seen += 1
            admitted = tally.seen <= self.per_minute
            if not admitted:
                tally.suppressed += 1
            return admitted, summaries

    def _roll(self) -> list[dict[str, Any]]:
        """On the first event of a new minute: the last minute's summaries, and a fresh count."""
        window = self._current_window()
        if window == self._window:
            return []
        start = rfc3339(datetime.fromtimestamp(self._window * 60, tz=UTC))
        summaries = [
            {
                "actor": tally.actor,
                "source_ip": tally.source_ip,
                "outcome": reason,
                "detail": {
                    "window_start": start,
                    "event": event_name,
                    "reason": reason,
                    "by": "all" if who == _OVERFLOW else who.partition(":")[0],
                    "suppressed": tally.suppressed,
                },
            }
            for (event_name, who, reason), tally in self._tallies.items()
            if tally.suppressed
        ]
        self._window, self._tallies = window, {}
        return summaries


def record_capped(event_name: str, *, session: WriteUnit | None = None, **fields: Any) -> LedgerRow | None:
    """Record a refusal: under the per-minute flood cap, and bounded (``gateway.audit.bounds.refusal``).

    Every event written for a refused request comes through here, so none can grow the
    ledger: at most ``AUDIT_FLOOD_PER_MINUTE`` rows per caller and reason a minute, each
    under 16 KB.  With ``session`` it is appended into the caller's write unit, else
    written in its own transaction.
    """
    merged = {**request_context_fields(), **fields}
    gate: FloodGate = current_app.extensions["gateway.audit_floodgate"]
    admitted, summaries = gate.admit(event_name, merged)
    if not summaries and not admitted:
        return None
    merged["params"], merged["detail"] = bounds.refusal(merged.get("params"), merged.get("detail"))
    if session is not None:
        return _append_capped(session, event_name, admitted, summaries, merged)
    with write_transaction() as tx:
        return _append_capped(tx, event_name, admitted, summaries, merged)


def _append_capped(
    session: WriteUnit,
    event_name: str,
    admitted: bool,
    summaries: list[dict[str, Any]],
    fields: dict[str, Any],
) -> LedgerRow | None:
    for summary in summaries:
        append(SUPPRESSED_EVENT, session=session, **summary)
    return append(event_name, session=session, **fields) if admitted else None


def init_app(app: Flask) -> None:
    app.extensions["gateway.audit_floodgate"] = FloodGate(app.config["AUDIT_FLOOD_PER_MINUTE"])
