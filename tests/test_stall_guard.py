"""stall_guard on a real PostgreSQL: a round trip past its deadline is cut off; everything else is left alone.

The end-to-end case (a stalled link, run requests answered 503 in bounded time)
is in test_faults.py; these pin the guard's own contract with slow statements.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from gateway import create_app
from gateway.db import stall_guard
from gateway.platform.extensions import db
from tests.conftest import base_environ, close_app

# The guard watches PostgreSQL connections only (a SQLite file cannot stall like a link).
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("backend", ["postgresql"])]
DEADLINE = 1.5


@pytest.fixture
def pg_app(make_app, monkeypatch):
    monkeypatch.setattr(stall_guard.GUARD, "deadline", DEADLINE)
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


def test_when_disabled_as_the_cli_does_nothing_is_cut(monkeypatch, database_url, tmp_path):
    """manage.py turns the guard off: a prune or a migration may hold a statement for long."""
    monkeypatch.setattr(stall_guard.GUARD, "deadline", DEADLINE)
    app = create_app(base_environ(database_url), tmp_path / "cli", config={"DATABASE_STALL_GUARD": False})
    try:
        with app.app_context():
            assert db.session.execute(text("SELECT 4 FROM pg_sleep(:s)"), {"s": DEADLINE + 0.5}).scalar() == 4
            db.session.commit()
        assert watched() == 0
    finally:
        close_app(app)


def _manage_py_app(monkeypatch, database_url, instance, command=None):
    """The app ``manage.py`` builds, for ``command`` (its click context) or outside any command."""
    import click

    import manage

    for key, value in base_environ(database_url, GATEWAY_INSTANCE_PATH=str(instance)).items():
        monkeypatch.setenv(key, value)
    if command is None:
        return manage._create_app()
    with click.Context(command, info_name=command.name):
        return manage._create_app()


def test_manage_py_turns_the_guard_off(monkeypatch, database_url, tmp_path):
    app = _manage_py_app(monkeypatch, database_url, tmp_path / "cli")
    try:
        assert app.config["DATABASE_STALL_GUARD"] is False
        with app.app_context():
            assert not stall_guard.guarded(db.engine)
    finally:
        close_app(app)


def test_manage_py_serve_keeps_the_guard_on(monkeypatch, database_url, tmp_path):
    from gateway.cli.demo import serve_command

    app = _manage_py_app(monkeypatch, database_url, tmp_path / "serve", serve_command)
    try:
        assert app.config["DATABASE_STALL_GUARD"] is True
        with app.app_context():
            assert stall_guard.guarded(db.engine)
    finally:
        close_app(app)


def test_a_pre_ping_that_fails_in_any_way_closes_its_connection_so_the_pool_reads_a_disconnect(pg_app):
    """psycopg may answer a ping on a link that died mid-ping with ProgrammingError, not a disconnect.

    The wrapper the engine's dialect gets must turn any failed ping into a closed connection,
    which SQLAlchemy's own ``is_disconnect`` reads as one (the pool then reconnects, or the
    request gets its 503): before, such a request answered 500 (seen in the fault suite).
    """
    import psycopg

    from gateway.db.dialect import closing_ping

    with pg_app.app_context():
        dialect = db.engine.dialect
        raw = db.engine.raw_connection()
        connection = raw.dbapi_connection

        def dies_mid_ping(dbapi_connection):
            raise psycopg.ProgrammingError("can't change 'autocommit' now: connection in transaction status ACTIVE")

        failure = None
        try:
            closing_ping(dies_mid_ping)(connection)
        except psycopg.ProgrammingError as exc:
            failure = exc
        assert failure is not None  # the error still reaches SQLAlchemy ...
        assert connection.closed  # ... on a closed connection ...
        assert dialect.is_disconnect(failure, connection, None)  # ... which it reads as a disconnect
        assert not dialect._do_ping_w_event(connection)  # the pool's view: ping failed, replace it
        raw.invalidate()
        assert db.session.execute(text("SELECT 1")).scalar() == 1  # a fresh connection serves
