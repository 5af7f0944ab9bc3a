"""Process groups reach the database in time, together: ``output.ProcessGroups`` and ``ChunkWriter``.

A run's process group is what a worker starting after a crash kills, so it
is written once ``FLUSH_SECONDS`` have passed since the spawn (or with the
finish of a faster run).  Batched (the executor's choice on SQLite), runs that
start together share that commit: the first flush that comes due writes every
pending group.  Unbatched (PostgreSQL), each run writes its own.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import IntegrityError

from gateway.db.models import Run
from gateway.db.prepared import Prepared
from gateway.db.units import write_connection
from gateway.platform.extensions import db
from gateway.runs.output import FLUSH_SECONDS, ChunkWriter, ProcessGroups
from gateway.runs.workers import get_executor
from tests.test_prepared import _run_values

pytestmark = pytest.mark.both_engines  # output and process groups: batched on SQLite, one commit per run on PostgreSQL

INSERT = Prepared(sa.insert(Run.__table__))


def _runs(app: Flask, count: int) -> list[str]:
    rows = [_run_values() for _ in range(count)]
    with app.app_context(), write_connection() as tx:
        INSERT.execute_many(tx, rows)
    return [row["id"] for row in rows]


def _pgids(app: Flask, run_ids: list[str]) -> dict[str, int | None]:
    with app.app_context():
        db.session.remove()
        found = db.session.execute(sa.select(Run.id, Run.pgid).where(Run.id.in_(run_ids)))
        return {run_id: pgid for run_id, pgid in found}


def test_the_first_flush_due_writes_every_pending_group(app: Flask) -> None:
    first, second, third = _runs(app, 3)
    groups = ProcessGroups(batched=True)
    writers = [ChunkWriter(run_id, groups=groups) for run_id in (first, second, third)]
    for pgid, writer in enumerate(writers, start=4001):
        writer.spawned(pgid)
    with app.app_context():
        writers[0].tick()  # not due yet: nothing is written
        assert _pgids(app, [first, second, third]) == {first: None, second: None, third: None}
        time.sleep(FLUSH_SECONDS)
        assert writers[0].due()
        writers[0].tick()  # one commit for all three runs
        assert _pgids(app, [first, second, third]) == {first: 4001, second: 4002, third: 4003}
        assert not any(writer.due() for writer in writers)  # nothing left for the others to write


def test_a_fast_run_writes_its_group_with_its_finish(app: Flask) -> None:
    """The finish takes its own pending group; a later flush of another run does not write it again."""
    fast, slow = _runs(app, 2)
    groups = ProcessGroups(batched=True)
    fast_writer, slow_writer = ChunkWriter(fast, groups=groups), ChunkWriter(slow, groups=groups)
    fast_writer.spawned(5001)
    slow_writer.spawned(5002)
    assert fast_writer.take_pgid() == 5001  # what runs.finish folds into the terminal UPDATE
    assert fast_writer.take_pgid() is None
    time.sleep(FLUSH_SECONDS)
    with app.app_context():
        slow_writer.tick()
    assert _pgids(app, [fast, slow]) == {fast: None, slow: 5002}


def test_output_flushes_carry_pending_groups_along(app: Flask) -> None:
    """A flush for output writes the groups pending at that moment too: the commit happens anyway."""
    chatty, quiet = _runs(app, 2)
    groups = ProcessGroups(batched=True)
    chatty_writer = ChunkWriter(chatty, groups=groups)
    ChunkWriter(quiet, groups=groups).spawned(6002)
    with app.app_context():
        chatty_writer.add("stdout", b"x" * 70_000)  # past FLUSH_BYTES: flushed at once
    assert _pgids(app, [chatty, quiet]) == {chatty: None, quiet: 6002}
    assert not groups.due(quiet) and groups.take_all() == {}


def test_unbatched_each_run_writes_its_own_group(app: Flask) -> None:
    mine, other = _runs(app, 2)
    groups = ProcessGroups(batched=False)
    mine_writer, other_writer = ChunkWriter(mine, groups=groups), ChunkWriter(other, groups=groups)
    mine_writer.spawned(7001)
    other_writer.spawned(7002)
    time.sleep(FLUSH_SECONDS)
    with app.app_context():
        mine_writer.tick()
        assert _pgids(app, [mine, other]) == {mine: 7001, other: None}
        other_writer.tick()
    assert _pgids(app, [mine, other]) == {mine: 7001, other: 7002}


def test_the_executor_batches_only_where_there_is_one_writer(app: Flask) -> None:
    with app.app_context():
        assert get_executor(app).groups.batched == (db.engine.dialect.name == "sqlite")


def test_groups_a_failed_flush_took_are_written_by_the_next(app: Flask) -> None:
    """A flush that fails (here: output for a run that does not exist) puts back the groups it took."""
    (real,) = _runs(app, 1)
    groups = ProcessGroups(batched=True)
    broken, writer = ChunkWriter("no-such-run", groups=groups), ChunkWriter(real, groups=groups)
    writer.spawned(8001)
    broken.add("stdout", b"lost?")
    time.sleep(FLUSH_SECONDS)
    with app.app_context():
        with pytest.raises(IntegrityError):
            broken.flush()  # took 8001 along, then failed on the chunk's foreign key
        assert _pgids(app, [real]) == {real: None}
        assert writer.due()
        writer.tick()
    assert _pgids(app, [real]) == {real: 8001}
