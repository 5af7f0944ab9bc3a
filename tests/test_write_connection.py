"""``write_connection()``: the runs' hot-path write unit keeps every rule of ``write_transaction()``.

A run's row and its ledger event are written through it on every run, so the
rules are checked on both engines: all or nothing, anchors and other
after-commit work only once committed, no nesting (which on SQLite would wait
on its own writer), and a request's session sees the write afterwards.  The
write lock taken before the first read is checked for both kinds of unit in
``test_audit_concurrency.py``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import event

from gateway import audit
from gateway.db.models import AuditEvent
from gateway.db.units import on_commit, write_connection, write_transaction
from gateway.platform.extensions import db
from tests.test_audit_chain import ledger_rows, verify

pytestmark = pytest.mark.both_engines  # runs and the ledger: the write lock and its bounds per engine


def _count_events(connection: Any = None) -> int:
    statement = sa.select(sa.func.count()).select_from(AuditEvent)
    return int((connection or db.session).scalar(statement))


def test_the_event_commits_with_the_unit_or_not_at_all(app: Flask) -> None:
    with app.app_context():
        with write_connection() as tx:
            row = audit.append("test.kept", session=tx, detail={"n": 1})
        with pytest.raises(ZeroDivisionError), write_connection() as tx:
            audit.append("test.rolled_back", session=tx)
            _ = 1 / 0
        with write_connection() as tx:
            after = audit.append("test.kept", session=tx, detail={"n": 2})
    rows = ledger_rows(app)
    assert [r["event"] for r in rows] == ["test.kept", "test.kept"]
    assert [r["seq"] for r in rows] == [row.seq, after.seq] == [1, 2]
    assert rows[1]["prev_hash"] == rows[0]["hash"] == row.hash
    assert verify(app).ok


def test_after_commit_work_runs_only_once_committed(app: Flask) -> None:
    done: list[str] = []
    with app.app_context():
        with write_connection() as tx:
            audit.append("test.event", session=tx)
            on_commit(tx, lambda: done.append("committed"))
            assert done == []
        assert done == ["committed"]
        with pytest.raises(ZeroDivisionError), write_connection() as tx:
            on_commit(tx, lambda: done.append("rolled back"))
            _ = 1 / 0
        with write_connection() as tx:
            assert _count_events(tx) == 1
    assert done == ["committed"]


def test_anchors_are_logged_after_commit_only(make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(AUDIT_ANCHOR_EVERY=2)
    caplog.set_level(logging.INFO, logger="gateway.audit.anchor")

    def anchored() -> list[int]:
        return [json.loads(r.getMessage())["seq"] for r in caplog.records if r.name == "gateway.audit.anchor"]

    with app.app_context():
        with write_connection() as tx:
            audit.append("test.event", session=tx)
            audit.append("test.event", session=tx)
            assert anchored() == []  # seq 2 is written but not committed
        assert anchored() == [2]
        with pytest.raises(ZeroDivisionError), write_connection() as tx:
            audit.append("test.rolled_back", session=tx)
            audit.append("test.rolled_back", session=tx)
            _ = 1 / 0
    assert anchored() == [2]


def test_units_do_not_nest_either_way(app: Flask) -> None:
    with app.app_context():
        began = time.monotonic()
        with write_connection(), pytest.raises(RuntimeError, match="nest"), write_transaction():
            pass
        with write_transaction(), pytest.raises(RuntimeError, match="nest"), write_connection():
            pass
        with write_connection(), pytest.raises(RuntimeError, match="nest"), write_connection():
            pass
        # Refused at once: on SQLite a nested unit would otherwise wait for its own writer.
        assert time.monotonic() - began < 5
        with pytest.raises(RuntimeError, match="write_transaction"), write_connection():
            audit.append("test.outside")  # the session is not the unit: refused, not written elsewhere
    assert ledger_rows(app) == []


def test_the_session_reads_the_write_afterwards(app: Flask) -> None:
    """A read transaction the request had open (a snapshot, on SQLite) is ended before the write."""
    with app.app_context():
        assert _count_events() == 0  # the session now holds an open read transaction
        with write_connection() as tx:
            audit.append("test.event", session=tx)
        assert _count_events() == 1


def test_a_connection_lost_inside_the_unit_raises_the_unit_s_own_error(app: Flask) -> None:
    """No reconnect while leaving the unit: during an outage that would wait, then hide the real error."""
    connects: list[int] = []
    with app.app_context():
        with write_connection():
            pass  # the pool holds a connection now
        event.listen(db.engine, "connect", lambda *_: connects.append(1))
        with pytest.raises(ValueError, match="the unit's own error"), write_connection() as tx:
            tx.invalidate()  # what a dropped link or the stall guard's cut leaves behind
            raise ValueError("the unit's own error")
        assert connects == []
        with write_connection() as tx:  # the next unit gets a working connection
            audit.append("test.after", session=tx)
    assert [row["event"] for row in ledger_rows(app)] == ["test.after"]


@pytest.mark.parametrize("unit", [write_transaction, write_connection], ids=["write_transaction", "write_connection"])
def test_a_request_gives_up_on_the_write_lock_in_bounded_time_a_background_writer_waits(
    make_app: Callable[..., Flask], unit: Callable[[], Any]
) -> None:
    """WRITE_LOCK_TIMEOUT_SECONDS bounds a request's wait (SQLite: the writer queue; PostgreSQL: the ledger lock).

    The same unit without a request (a run's end, a lease renewal) keeps the long patience.
    """
    app = make_app(WRITE_LOCK_TIMEOUT_SECONDS=1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # a writer of this process that keeps the ledger (and SQLite's write lock) a while
        with app.app_context():
            with write_connection() as tx:
                audit.append("test.holder", session=tx)
                holding.set()
                release.wait(15)
            db.session.remove()

    def background() -> None:
        with app.app_context():
            with unit() as tx:
                audit.append("test.background", session=tx)
            db.session.remove()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with app.test_request_context("/"):
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError), unit() as tx:  # the error every 503 handler maps
                audit.append("test.request", session=tx)
            waited = time.monotonic() - started
            assert 0.8 <= waited < 3, waited
            db.session.remove()
        waiter = threading.Thread(target=background)
        waiter.start()
        time.sleep(2)  # longer than a request may wait
        assert waiter.is_alive()
        release.set()
        waiter.join(15)
        assert not waiter.is_alive()
    finally:
        release.set()
        holder.join(15)
    assert [row["event"] for row in ledger_rows(app)] == ["test.holder", "test.background"]
    assert verify(app).ok
