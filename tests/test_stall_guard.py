"""stall_guard on a real PostgreSQL: a round trip past its deadline is cut off; everything else is left alone.

The end-to-end case (a stalled link, run requests answered 503 in bounded time)
is in test_faults.py; these pin the guard's own contract with slow statements.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from gateway.db import stall_guard
from gateway.platform.extensions import db
from tests.conftest import base_environ, close_app

# The guard watches PostgreSQL connections only (a SQLite file cannot stall like a link).
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("backend", ["postgresql"])]
DEADLINE = 1.5


@pytest.fixture
def pg_app(make_app, monkeypatch):
    monkeypatch.setattr(stall_guard.GUARD, "deadline", DEADLINE)
    monkeypatch.setattr(stall_guard.GUARD, "enabled", True)
    return make_app()


def watched() -> int:
    with stall_guard.GUARD._changed:
        return len(stall_guard.GUARD._watched)


def test_a_statement_past_its_deadline_is_cut_off_and_the_next_one_works(pg_app):
    with pg_app.app_context():
        started = time.monotonic()
        with pytest.raises(OperationalError):
            db.session.execute(text("SELECT pg_sleep(30)"))
        assert time.monotonic() - started < 10
        db.session.rollback()
        # The cut connection was discarded by the pool: the next statement gets a working one.
        assert db.session.execute(text("SELECT 1")).scalar() == 1
        db.session.commit()
    assert watched() == 0


def test_round_trips_that_end_in_time_are_never_cut_whatever_their_outcome(pg_app):
    with pg_app.app_context():
        assert db.session.execute(text("SELECT 1 FROM pg_sleep(0.2)")).scalar() == 1
        with pytest.raises(DBAPIError):  # a statement the server refuses still ends its watch
            db.session.execute(text("SELECT 1 / 0"))
        db.session.rollback()
        db.session.execute(text("SELECT 2"))
        db.session.commit()
        assert watched() == 0
        time.sleep(DEADLINE + 0.5)  # past every deadline above: nothing fires late
        assert db.session.execute(text("SELECT 3")).scalar() == 3
        db.session.commit()


def test_when_disabled_as_the_cli_does_nothing_is_cut(pg_app):
    """manage.py turns the guard off: a prune or a migration may hold a statement for long."""
    stall_guard.GUARD.enabled = False
    with pg_app.app_context():
        assert db.session.execute(text("SELECT 4 FROM pg_sleep(:s)"), {"s": DEADLINE + 0.5}).scalar() == 4
        db.session.commit()
    assert watched() == 0


def test_manage_py_turns_the_guard_off(monkeypatch, database_url, tmp_path):
    import manage

    monkeypatch.setattr(stall_guard.GUARD, "enabled", True)
    for key, value in base_environ(database_url, GATEWAY_INSTANCE_PATH=str(tmp_path / "cli")).items():
        monkeypatch.setenv(key, value)
    app = manage._create_app()
    try:
        assert stall_guard.GUARD.enabled is False
    finally:
        close_app(app)
