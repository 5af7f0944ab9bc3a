"""``gateway.db.prepared``: the hot path's statements store and return what SQLAlchemy Core would.

On SQLite they bypass Core's execution layer, so each test writes or reads the
same values both ways on the same database and compares: datetimes (stored as
text by SQLite, aware UTC when read), JSON (including a JSON null and an
absent value), booleans, integers.  On PostgreSQL the same calls go through
Core, and the tests check that delegation gives the same answers.
"""

from __future__ import annotations

import subprocess  # nosec B404  # a fresh interpreter for one test
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import IntegrityError, InvalidRequestError, StatementError

from gateway.db.models import Run
from gateway.db.prepared import Prepared
from gateway.db.units import write_connection
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

pytestmark = pytest.mark.both_engines  # prepared statements are compiled per dialect

ROOT = Path(__file__).resolve().parent.parent
RUNS = Run.__table__
INSERT = Prepared(sa.insert(RUNS))
BY_ID = Prepared(sa.select(RUNS).where(RUNS.c.id == sa.bindparam("run_id")))
FINISH = Prepared(
    sa.update(RUNS)
    .where(RUNS.c.id == sa.bindparam("_run_id"), RUNS.c.status.in_([sa.bindparam("_live", "running")]))
    .returning(*RUNS.c)
)


def _run_values(**changes: Any) -> dict[str, Any]:
    now = utcnow()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "command": "echo",
        "command_sha256": "a" * 64,
        "kind": "shell",
        "params": {"text": "héllo", "n": 3, "nested": [1, None, {"x": True}]},
        "cache_key": None,
        "user_id": None,
        "username": "alice",
        "source_ip": "10.0.0.1",
        "status": "running",
        "created_at": now,
        "started_at": now,
        "output_bytes": 0,
        "output_truncated": False,
        "host": "host",
        "boot_id": "boot",
        "timeout_seconds": 10,
        "lease_expires_at": now + timedelta(seconds=15),
    }
    values.update(changes)
    return values


def _stored(run_id: str) -> dict[str, Any]:
    """The row as the ORM loads it (a fresh session: nothing cached)."""
    db.session.remove()
    run = db.session.get(Run, run_id)
    assert run is not None
    return {column.key: getattr(run, column.key) for column in RUNS.c if column.key != "id"}


def test_an_insert_stores_what_core_stores(app: Flask) -> None:
    with app.app_context():
        through_core = _run_values()
        prepared = {**through_core, "id": str(uuid.uuid4())}
        with write_connection() as tx:
            tx.execute(sa.insert(RUNS), through_core)
            INSERT.execute(tx, prepared)
        assert _stored(prepared["id"]) == _stored(through_core["id"])
        stored = _stored(prepared["id"])
        assert stored["params"] == prepared["params"]
        assert stored["created_at"] == prepared["created_at"]
        assert stored["created_at"].utcoffset() == timedelta(0)
        assert stored["output_truncated"] is False


def test_returning_and_select_rows_load_like_core(app: Flask) -> None:
    with app.app_context():
        values = _run_values()
        finish = {"status": "succeeded", "exit_code": 0, "finished_at": utcnow(), "result": None, "pgid": 4242}
        with write_connection() as tx:
            INSERT.execute(tx, values)
            row = FINISH.first(tx, {"_run_id": values["id"], **finish})
        assert row is not None
        with db.engine.connect() as connection:
            core_row = dict(connection.execute(sa.select(RUNS).where(RUNS.c.id == values["id"])).one()._mapping)
            assert BY_ID.first(connection, {"run_id": values["id"]}) == core_row
        assert row == core_row
        assert row["status"] == "succeeded" and row["pgid"] == 4242 and row["exit_code"] == 0
        assert row["finished_at"] == finish["finished_at"]
        assert row["params"] == values["params"]
        assert row["output_truncated"] is False


def test_a_json_null_and_an_absent_value_stay_distinct(app: Flask) -> None:
    """``result=None`` given is what Core stores for it (the JSON type's null); not given, SQL NULL."""
    with app.app_context():
        given_core = _run_values(result=None)
        given_prepared = {**given_core, "id": str(uuid.uuid4())}
        with write_connection() as tx:
            tx.execute(sa.insert(RUNS), given_core)
            INSERT.execute(tx, given_prepared)
            absent = _run_values()
            INSERT.execute(tx, absent)
        raw = sa.select(RUNS.c.id, sa.type_coerce(RUNS.c.result, sa.Text)).where(
            RUNS.c.id.in_([given_core["id"], given_prepared["id"], absent["id"]])
        )
        with db.engine.connect() as connection:
            stored: dict[str, str | None] = {run_id: text for run_id, text in connection.execute(raw)}
        assert stored[given_prepared["id"]] == stored[given_core["id"]]
        assert stored[absent["id"]] is None


def test_an_update_reports_the_rows_it_matched(app: Flask) -> None:
    set_status = Prepared(
        sa.update(RUNS).where(RUNS.c.id == sa.bindparam("run_id"), RUNS.c.status == "running").values(status="lost")
    )
    with app.app_context():
        values = _run_values()
        with write_connection() as tx:
            INSERT.execute(tx, values)
            assert set_status.execute(tx, {"run_id": values["id"]}) == 1
            assert set_status.execute(tx, {"run_id": values["id"]}) == 0  # no longer running
        assert _stored(values["id"])["status"] == "lost"


def test_a_driver_error_is_sqlalchemys_and_the_unit_rolls_back(app: Flask) -> None:
    with app.app_context():
        values = _run_values()
        with pytest.raises(IntegrityError), write_connection() as tx:
            INSERT.execute(tx, values)
            INSERT.execute(tx, dict(values))  # the same primary key again
        with db.engine.connect() as connection:
            assert BY_ID.first(connection, {"run_id": values["id"]}) is None  # neither insert stayed


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL goes through Core, which applies the default
def test_a_missing_column_is_an_error_not_a_silent_default(app: Flask) -> None:
    with app.app_context():
        values = _run_values()
        del values["created_at"]
        with pytest.raises(StatementError, match="created_at"), write_connection() as tx:
            INSERT.execute(tx, values)


def test_a_value_its_type_refuses_is_a_statement_error_as_in_core(app: Flask) -> None:
    """What callers catch (SQLAlchemyError) is what they get, whichever path ran the statement."""
    with app.app_context(), pytest.raises(StatementError, match="output_truncated"), write_connection() as tx:
        INSERT.execute(tx, _run_values(output_truncated="yes"))


@pytest.mark.parametrize("backend", ["sqlite"])  # Core (PostgreSQL) would begin a transaction itself
def test_a_write_outside_a_unit_is_refused_not_autocommitted(app: Flask) -> None:
    with app.app_context():
        values = _run_values()
        with db.engine.connect() as connection, pytest.raises(InvalidRequestError, match="transaction"):
            INSERT.execute(connection, values)
        with pytest.raises(InvalidRequestError, match="transaction"), write_connection() as tx:
            tx.commit()  # the unit's transaction is over: what follows would commit on its own
            INSERT.execute(tx, values)
        with db.engine.connect() as connection:
            assert BY_ID.first(connection, {"run_id": values["id"]}) is None


@pytest.mark.parametrize("backend", ["sqlite"])
def test_statements_core_renders_per_execution_are_refused(app: Flask) -> None:
    """An expanding IN list is rendered by Core at each execution; compiled once it would be wrong."""
    expanding = Prepared(sa.select(RUNS.c.id).where(RUNS.c.status.in_(["queued", "running"])))
    with app.app_context(), db.engine.connect() as connection, pytest.raises(TypeError, match="expanding IN"):
        expanding.first(connection)


def test_a_detached_run_reads_before_any_orm_use(tmp_path: Path) -> None:
    """In a fresh interpreter the first Run may be a detached one (no ORM query has configured the mappers)."""
    script = f"""
import uuid
from gateway import create_app
from gateway.db import migrate
from gateway.api.streams import fresh_run
from gateway.db.units import write_connection
from tests.conftest import base_environ
from tests.test_prepared import INSERT, _run_values

app = create_app(base_environ("sqlite:///{tmp_path / "fresh.db"}"), instance_path="{tmp_path / "instance"}")
with app.app_context():
    migrate.upgrade("head")
    values = _run_values()
    with write_connection() as tx:
        INSERT.execute(tx, values)
    print(fresh_run(values["id"]).status)
"""
    done = subprocess.run(  # nosec B603  # the test's own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "running"


def test_many_rows_in_one_call(app: Flask) -> None:
    with app.app_context():
        rows = [_run_values() for _ in range(3)]
        with write_connection() as tx:
            INSERT.execute_many(tx, rows)
        with db.engine.connect() as connection:
            found = {BY_ID.scalar(connection, {"run_id": row["id"]}) for row in rows}
        assert found == {row["id"] for row in rows}
