"""Audit forwarding: the ledger sent to each ``AUDIT_FORWARD`` destination, in ``seq`` order, with its chain.

Forwarding reads the ledger itself from a stored cursor per destination; it
writes no outbox rows and no ledger events per batch, never gives up on a
destination (the lag is the alarm) and never stands on a run's commit path.

- ``cursors``: every statement on ``audit_forward_cursors`` (the cursor, the lease);
- ``batches``: the next events after a cursor, with their canonical text;
- ``senders``: a batch as JSON lines over HTTP(S) or RFC 5424 over TCP/TLS, by kind;
- ``forwarder``: the thread per destination in each serving process, and its lifecycle;
- ``status``: each destination's cursor and lag (``forward-status``, ``/metrics``);
- ``operations``: an operator's audited ``forward-reset`` and ``--forget``.

May import the ledger and the stored-row reader of this package's parent,
``gateway.db``, ``gateway.platform`` and ``gateway.outbound`` (every send leaves
through it); the audit package's ``pruning`` reads the cursors from here.
"""

from __future__ import annotations

from gateway.audit.forwarding.forwarder import Forwarding, start_forwarding, stop_forwarding
from gateway.audit.forwarding.operations import ForwardRefused, forget, reset
from gateway.audit.forwarding.status import DestinationStatus, lag_by_destination, statuses

__all__ = [
    "DestinationStatus",
    "ForwardRefused",
    "Forwarding",
    "forget",
    "lag_by_destination",
    "reset",
    "start_forwarding",
    "statuses",
    "stop_forwarding",
]
