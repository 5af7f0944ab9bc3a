"""The outbox's one door in: ``enqueue`` deliveries inside the write unit of their cause.

A run's end (``gateway.runs.notices``) calls it in the transaction that writes
the terminal state and ``run.finished``; an approval request or decision will
call it in its own.  The rows commit with the cause or not at all, and the
workers hear of them only after that commit (the local one by an after-commit
callback, the other replicas' by a NOTIFY that PostgreSQL sends at commit): so
nothing is sent for a cause that rolled back, and nothing before it committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from flask import current_app

from gateway.catalogue.switches import current_catalogue
from gateway.db.units import WriteUnit, core, on_commit
from gateway.deliveries import store
from gateway.deliveries.worker import wake_local
from gateway.platform import notify


def enqueue(
    unit: WriteUnit,
    destinations: Sequence[str],
    event: str,
    payload: Mapping[str, Any],
    *,
    run_id: str | None = None,
) -> list[str]:
    """One delivery per notification named in ``destinations`` (catalogue names), due at once; their ids.

    ``payload`` is what the messages say (see ``gateway.deliveries.render``): it
    is stored as given, so it must hold no secret and no more output than an excerpt.
    :raise KeyError: a destination that is not a notification of the loaded catalogue (a caller's bug:
        the catalogue's ``notify:`` lists are checked at load).
    """
    if not destinations:
        return []
    notifications = current_catalogue().notifications
    ids = [str(uuid.uuid4()) for _ in destinations]
    rows = [
        {
            "id": delivery_id, "destination": name, "kind": notifications[name].kind, "event": event,
            "run_id": run_id, "payload": dict(payload), "status": store.PENDING, "attempts": 0,
        }
        for delivery_id, name in zip(ids, destinations, strict=True)
    ]  # fmt: skip
    connection = core(unit)
    store.insert_rows(connection, rows)
    notify.publish(ids[0], notify.DELIVERY, connection)  # other replicas' workers, at commit
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    on_commit(unit, lambda: wake_local(app))
    return ids


def retry(delivery_id: str, **fields: Any) -> str:
    """An admin's retry (``store.retry``: audited, due now); this process's worker looks at once."""
    outcome = store.retry(delivery_id, **fields)
    if outcome == "retried":
        wake_local(current_app._get_current_object())  # type: ignore[attr-defined]
    return outcome
