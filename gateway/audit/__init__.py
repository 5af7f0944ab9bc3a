"""The audit room: the HMAC-chained ledger of who did what, and everything that reads or guards it.

Owns ``audit_events``: nothing outside this package writes it.  The rooms:

- ``ledger``: the canonical form and the hash, the keyring, ``append`` (inside the
  caller's write unit) and ``record`` (its own), the request's actor and address;
- ``flood``: ``record_capped``, the per-minute cap on events of refused requests;
- ``bounds``: the size bounds of what a caller's request puts in an event;
- ``anchors``: the signed chain head, logged every Nth row and parsed back;
- ``verifier``: the fast check of the whole chain, built on the ledger's canonical form;
- ``status``: the scheduled verification's result, kept in the ledger for ``/metrics``;
- ``stored``: the stored rows read as text and encoded canonically, for whole-ledger readers;
- ``pruning``: retention, the one place rows are deleted (never past a forwarding cursor unless forced);
- ``queries`` and ``exports``: the viewer's filters and pages, and CSV/JSON export;
- ``forwarding``: the ledger sent to SIEMs from a cursor per destination (its own ``__init__``).

May import ``gateway.db`` and ``gateway.platform`` (``forwarding`` also ``gateway.outbound``); never the rooms
that call it (identity, access, runs, the delivery layer), and never ``gateway.platform.metrics``
(metrics hear of appends through ``signals.audit_appended``).  Other rooms use the names
re-exported below; the submodules import each other, never this package.
"""

from __future__ import annotations

from flask import Flask

from gateway.audit import anchors, flood
from gateway.audit.anchors import AnchorError, current_anchor, parse_anchor, sign_anchor
from gateway.audit.flood import FloodGate, record_capped
from gateway.audit.ledger import (
    GENESIS_HASH,
    PG_LOCK_KEY,
    USER_AGENT_MAX,
    Keyring,
    LedgerRow,
    append,
    canonical_bytes,
    canonical_document,
    record,
    request_context_fields,
    row_hash,
)
from gateway.audit.pruning import PruneRefused, prune
from gateway.audit.verifier import Verification, verify

__all__ = [
    "GENESIS_HASH",
    "PG_LOCK_KEY",
    "USER_AGENT_MAX",
    "AnchorError",
    "FloodGate",
    "Keyring",
    "LedgerRow",
    "PruneRefused",
    "Verification",
    "append",
    "canonical_bytes",
    "canonical_document",
    "current_anchor",
    "init_app",
    "parse_anchor",
    "prune",
    "record",
    "record_capped",
    "request_context_fields",
    "row_hash",
    "sign_anchor",
    "verify",
]


def init_app(app: Flask) -> None:
    """The flood gate for this app, and the anchor log's subscription to appends."""
    flood.init_app(app)
    anchors.init_app(app)
