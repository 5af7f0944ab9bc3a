"""The outbox hooks of the approval flow: who is told, in the transaction of the change that tells it.

DESIGN.md: approvers are notified through the outbox (event ``approval.notify``)
when a request is made, and the requester when it is decided (approved and
started, approved and failed to start, denied, expired).  Both are called
inside the write unit that records the change, so a delivery row written here
commits with its cause or not at all.  The outbox (the notifications issue) is
not part of this branch yet: until it is wired in, these record nothing.
"""

from __future__ import annotations

from typing import Any

from gateway.catalogue import Command
from gateway.db.units import WriteUnit

NOTIFY_EVENT = "approval.notify"


def notify_approvers(tx: WriteUnit, run: Any, command: Command) -> None:
    """A request waits: queue ``approval.notify`` to ``command.approval.notify`` (the outbox hook; no-op for now)."""
    del tx, run, command


def notify_requester(tx: WriteUnit, run: Any, command: Command | None, outcome: str) -> None:
    """A request was decided (``outcome``: the run's new state): tell its requester (the outbox hook; no-op for now)."""
    del tx, run, command, outcome
