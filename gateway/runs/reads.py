"""Reads of a run that must see the database as it is now, not the request's snapshot.

A long-poll or a stream re-reads its run at every wake-up, and the run may
have moved in any replica meanwhile: each read takes a connection of its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from gateway.db.models import Run
from gateway.db.prepared import Prepared
from gateway.platform.extensions import db

_RUN_BY_ID = Prepared(select(Run.__table__).where(Run.__table__.c.id == bindparam("run_id")))


def current_row(run_id: str) -> dict[str, Any] | None:
    """The run's row by column key, as committed now; None when there is no such run.

    A prepared statement on a connection of its own: the ORM's identity-map
    load cost more than the query, at every wake-up of every waiter.
    """
    with db.engine.connect() as connection:
        return _RUN_BY_ID.first(connection, {"run_id": run_id})
