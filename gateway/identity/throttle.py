"""Timed sign-in locks per normalised username, for names that exist and names that do not.

After ``LOGIN_MAX_ATTEMPTS`` consecutive failures the name is locked for
``LOGIN_LOCK_SECONDS``, doubling with each further lock up to
``LOGIN_LOCK_MAX_SECONDS``: the cap is what keeps anyone from locking the
admins out forever, and ``manage.py users unlock`` clears a lock at once.
Because unknown names lock exactly like real ones, a lock reveals nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from gateway.db import dialect
from gateway.db.models import LoginThrottle
from gateway.db.units import rows_matched
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

# Past this many doublings every lock is at the cap anyway; bounding the exponent keeps the number small.
MAX_DOUBLINGS = 32


@dataclass(frozen=True)
class FailureOutcome:
    locked_until: datetime | None  # set when this failure started a lock
    failures: int


def locked_until(username: str) -> datetime | None:
    """When the name's lock ends, or None if it is not locked now."""
    row = db.session.get(LoginThrottle, username)
    if row is None or row.locked_until is None or row.locked_until <= utcnow():
        return None
    return row.locked_until


def register_failure(username: str) -> FailureOutcome:
    """Inside a write transaction: count a failure and lock when the limit is reached."""
    config = current_app.config
    row = _row_for_update(username)
    now = utcnow()
    row.failures = (row.failures or 0) + 1
    row.last_failure_at = now
    if row.failures < config["LOGIN_MAX_ATTEMPTS"]:
        return FailureOutcome(locked_until=None, failures=row.failures)
    doublings = min(row.lock_count or 0, MAX_DOUBLINGS)
    seconds = min(config["LOGIN_LOCK_SECONDS"] * 2**doublings, config["LOGIN_LOCK_MAX_SECONDS"])
    row.locked_until = now + timedelta(seconds=seconds)
    row.lock_count = (row.lock_count or 0) + 1
    row.failures = 0
    return FailureOutcome(locked_until=row.locked_until, failures=config["LOGIN_MAX_ATTEMPTS"])


def _row_for_update(username: str) -> LoginThrottle:
    """The name's row, created if missing, read fresh and row-locked in this transaction.

    Parallel guesses at one name must each count: an insert that ignores a
    concurrent twin avoids a unique violation on the first failure, and
    ``FOR UPDATE`` (PostgreSQL; SQLite already holds the write lock) plus
    ``populate_existing`` keep an earlier read in this session from being
    incremented instead of the committed value.
    """
    session = db.session
    insert = dialect.insert_unless_present(session.get_bind(), LoginThrottle, index_elements=["username"])
    session.execute(insert.values(username=username, failures=0, lock_count=0))
    query = select(LoginThrottle).where(LoginThrottle.username == username).with_for_update()
    return session.execute(query.execution_options(populate_existing=True)).scalar_one()


def clear(username: str) -> bool:
    """Inside a write transaction: forget failures and locks (successful sign-in, unlock)."""
    result = db.session.execute(delete(LoginThrottle).where(LoginThrottle.username == username))
    return rows_matched(result) > 0
