"""Deliveries: the notifications' transactional outbox, its workers, its retries (DESIGN.md, "Outbound delivery").

The rooms:

- ``outbox``: ``enqueue``, the one door in, inside the write unit of the delivery's cause;
- ``store``: every statement on the ``deliveries`` table (claim with a lease, outcome, admin list and retry);
- ``worker``: the per-process thread that claims, sends and records, woken by enqueues (NOTIFY across replicas);
- ``sending``: one attempt: the notification's target and the kind's sender (``gateway.outbound``);
- ``render``: the webhook body, the Slack message and the mail, output inert in each;
- ``retries``: exponential backoff with jitter, ``DELIVERY_MAX_ATTEMPTS``.

Events: ``delivery.failed`` (a delivery's first failure), ``delivery.dead``,
``admin.delivery_retried``; each attempt is a metric (``delivery_attempted``), not a ledger row.

May import the domain rooms below the runs engine (audit, catalogue, db, outbound, platform);
never ``runs`` (which calls ``enqueue`` at a run's end) or the delivery layer.
"""

from __future__ import annotations

from gateway.deliveries.outbox import enqueue, retry
from gateway.deliveries.sending import RESULTS
from gateway.deliveries.store import DEAD, DELIVERED, FAILED, PENDING, counts, unfinished
from gateway.deliveries.worker import DeliveryWorker, get_worker, start_worker, stop_worker, wake_local

__all__ = [
    "DEAD",
    "DELIVERED",
    "FAILED",
    "PENDING",
    "RESULTS",
    "DeliveryWorker",
    "counts",
    "enqueue",
    "get_worker",
    "retry",
    "start_worker",
    "stop_worker",
    "unfinished",
    "wake_local",
]
