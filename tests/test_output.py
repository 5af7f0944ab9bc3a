"""Process groups reach the database in time, together: ``output.ProcessGroups`` and ``ChunkWriter``.

A run's process group is what a worker starting after a crash kills, so it
must be written within ``FLUSH_SECONDS`` of the spawn (or with the finish of a
faster run).  Runs that start together share that commit: the first flush that
comes due writes every pending group.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from flask import Flask

from gateway.database import write_connection
from gateway.extensions import db
from gateway.models import Run
from gateway.output import FLUSH_SECONDS, ChunkWriter, ProcessGroups
from gateway.prepared import Prepared
from tests.test_prepared import _run_values

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
    groups = ProcessGroups()
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
    groups = ProcessGroups()
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
    groups = ProcessGroups()
    chatty_writer = ChunkWriter(chatty, groups=groups)
    ChunkWriter(quiet, groups=groups).spawned(6002)
    with app.app_context():
        chatty_writer.add("stdout", b"x" * 70_000)  # past FLUSH_BYTES: flushed at once
    assert _pgids(app, [chatty, quiet]) == {chatty: None, quiet: 6002}
    assert not groups.due() and groups.take_all() == {}
