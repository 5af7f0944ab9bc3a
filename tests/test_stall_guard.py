"""stall_guard on a real PostgreSQL: a statement past its deadline is cut off; one in time is left alone.

The end-to-end case (a stalled link, run requests answered 503 in bounded time)
is in test_faults.py; these pin the guard's own contract with a slow statement.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from gateway import stall_guard
from gateway.extensions import db

# The guard watches PostgreSQL connections only (a SQLite file cannot stall like a link).
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("backend", ["postgresql"])]


@pytest.fixture
def pg_app(make_app, monkeypatch):
    monkeypatch.setattr(stall_guard.GUARD, "deadline", 1.0)
    return make_app()


def test_a_request_statement_past_its_deadline_is_cut_off_and_the_next_one_works(pg_app):
    with pg_app.test_request_context("/"):
        started = time.monotonic()
        with pytest.raises(OperationalError):
            db.session.execute(text("SELECT pg_sleep(30)"))
        assert time.monotonic() - started < 10
        db.session.rollback()
        # The cut connection was discarded by the pool: the next statement gets a working one.
        assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_statements_that_finish_in_time_are_never_cut(pg_app):
    with pg_app.test_request_context("/"):
        for _ in range(5):
            assert db.session.execute(text("SELECT 1 FROM pg_sleep(0.3)")).scalar() == 1
        time.sleep(1.5)  # past the deadline of every statement above: nothing fires late
        assert db.session.execute(text("SELECT 2")).scalar() == 2


def test_the_cli_and_other_threads_are_not_watched(pg_app):
    """A prune or a migration from manage.py may run long: outside a request nothing is cut."""
    outcome: list[object] = []

    def slow_statement() -> None:
        with pg_app.app_context():
            outcome.append(db.session.execute(text("SELECT 3 FROM pg_sleep(1.5)")).scalar())

    worker = threading.Thread(target=slow_statement, name="cli-like")
    worker.start()
    worker.join(20)
    assert outcome == [3]
