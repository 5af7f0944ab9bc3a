"""The audit viewer's free-text filter on both engines, now answered through a trigram index
(SQLite FTS5, PostgreSQL pg_trgm; migration 0005): exactly the rows the plain LIKE semantics
match, whatever the text holds (LIKE wildcards, quotes, FTS operators), on every page; the index
follows appends and prunes; the migration indexes existing rows and downgrades clean.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import audit
from gateway.audit import queries
from gateway.db import migrate
from gateway.db.models import AuditEvent
from gateway.db.units import write_transaction
from gateway.platform.extensions import db
from tests.test_migrations import empty_app  # noqa: F401  (the fixture: an app on a database with no schema)

pytestmark = pytest.mark.both_engines  # the ledger's text index: FTS5 on SQLite, pg_trgm on PostgreSQL

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PARAMS: list[Any] = [
    {"pattern": "100% sure"},
    {"pattern": "a_b", "other": "aXb"},
    {"path": "C:\\temp\\x"},
    {"quote": 'say "hi" now'},
    {"query": "foo OR bar"},
    {"query": "foo AND NOT bar"},
    {"glob": "fo* and *"},
    {"near": "NEAR(a b, 3)", "col": "params:value", "caret": "^start"},
    {"note": "café au lait", "emoji": "\U0001f600 ok"},
    {"note": "CAFÉ NOIR"},
    {"status": "Pending", "n": 42},
    {"status": "pending review"},
    {"nested": {"list": [1, "two", {"deep": "treasure"}]}},
    {"empty": ""},
    "a bare string param",
    ["list", "param"],
    None,
]
NEEDLES = [
    "100%", "%", "0% s", "_", "a_b", "OR", "foo OR bar", "AND NOT", "*", "fo*", "* and *", '"', 'say "hi"',
    '"hi"', "NEAR(a", "params:value", "^start", "\\", "C:\\temp", "café", "CAFÉ", "É", "\U0001f600", "au lait",
    "pending", "PENDING", "42", "deep", "treasure", "list", "{", '": "', "no such text", "ab", "a",
    "bare string", "u00e9",
]  # fmt: skip
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def expected(seqs: list[int], needle: str) -> list[int]:
    """The filter's meaning, independently: an ASCII-case-insensitive substring of the stored JSON text
    (written with ASCII escapes), as typed or JSON-escaped. Newest first."""
    spellings = {needle.translate(ASCII_LOWER), json.dumps(needle)[1:-1].translate(ASCII_LOWER)}
    hits = []
    for seq, params in zip(seqs, PARAMS, strict=True):
        stored = json.dumps(params).translate(ASCII_LOWER)
        if params is not None and any(s in stored for s in spellings):
            hits.append(seq)
    return sorted(hits, reverse=True)


def add_rows(app: Flask, params_list: list[Any] = PARAMS, base: datetime = BASE) -> list[int]:
    with app.app_context(), write_transaction() as tx:
        rows = [
            audit.append("test.text", session=tx, params=params, at=base + timedelta(minutes=index))
            for index, params in enumerate(params_list)
        ]
        return [row.seq for row in rows]


def search(needle: str, *, limit: int = 1000, **more: str) -> list[int]:
    """Every matching seq through the viewer's paging, ``limit`` rows a page, newest first."""
    flt = queries.AuditFilter.from_args({"text": needle, "until": "2024-06-01T00:00", **more})
    seqs: list[int] = []
    cursor = None
    while True:
        rows, cursor = queries.page(flt, before_seq=cursor, limit=limit)
        seqs.extend(row.seq for row in rows)
        if cursor is None:
            return seqs


@pytest.fixture
def seqs(app: Flask) -> list[int]:
    return add_rows(app)


@pytest.mark.parametrize("needle", NEEDLES)
def test_free_text_returns_exactly_the_matching_rows(app: Flask, seqs: list[int], needle: str) -> None:
    with app.app_context():
        assert search(needle) == expected(seqs, needle)
        assert search(needle, limit=2) == expected(seqs, needle)  # paged by the index's order too
        exported = [row.seq for row in queries.iter_rows(queries.AuditFilter(text=needle), batch=2)]
        assert [s for s in exported if s in seqs] == sorted(expected(seqs, needle))


def test_free_text_combines_with_the_other_filters(app: Flask, seqs: list[int]) -> None:
    with app.app_context(), write_transaction() as tx:
        other = audit.append("test.other", session=tx, params={"status": "Pending"}, at=BASE, command="x-cmd")
    with app.app_context():
        assert search("pending", command="x-cmd") == [other.seq]
        assert search("pending", event="test.text") == expected(seqs, "pending")
        assert search("pending", since="2024-05-01T12:10") == [s for s in expected(seqs, "pending") if s > seqs[9]]


def query_plan(app: Flask, needle: str) -> str:
    with app.app_context(), db.engine.connect() as connection:
        flt = queries.AuditFilter(text=needle)
        query, key = flt.keyed(sa.select(AuditEvent.seq))
        compiled = query.order_by(key.desc()).limit(51).compile(connection, compile_kwargs={"literal_binds": True})
        if connection.dialect.name == "postgresql":
            # A small table: the planner would rightly scan it. Show that the trigram index can serve the query.
            connection.exec_driver_sql("SET enable_seqscan = off")
            connection.exec_driver_sql("SET enable_indexscan = off")
            plan = connection.exec_driver_sql(f"EXPLAIN {compiled}").scalars()
        else:
            plan = (row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
        return "\n".join(plan)


def test_free_text_uses_the_trigram_index(app: Flask, seqs: list[int], backend: str) -> None:
    index = "ix_audit_events_params_trgm" if backend == "postgresql" else "VIRTUAL TABLE"
    assert index in query_plan(app, "treasure")
    assert index in query_plan(app, 'say "hi" OR *')


def fts_integrity_check(app: Flask) -> None:
    """SQLite: FTS5 compares its index with the ledger's rows and raises if they differ."""
    with app.app_context(), db.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "INSERT INTO audit_events_fts(audit_events_fts, rank) VALUES ('integrity-check', 1)"
            )


def test_the_index_follows_appends_and_prunes(app: Flask) -> None:
    old = add_rows(app, [{"era": "ancient relic"}, {"era": "ancient ruin"}], base=BASE - timedelta(days=400))
    new = add_rows(app, [{"era": "modern relic"}])
    with app.app_context():
        assert search("relic") == [new[0], old[0]]
        fts_integrity_check(app)
        audit.prune(BASE - timedelta(days=30))
        assert search("relic") == [new[0]]
        assert search("ancient") == []
        fts_integrity_check(app)
        assert audit.verify(db.session, audit.Keyring.from_config(app.config)).ok


def text_index_objects() -> set[str]:
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            query = (
                "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_audit_events_params_trgm' "
                "UNION ALL SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'"
            )
        else:
            query = "SELECT name FROM sqlite_master WHERE name LIKE 'audit_events_fts%'"
        return set(connection.exec_driver_sql(query).scalars())


def test_migration_indexes_existing_rows_and_downgrades_clean(empty_app: Flask, backend: str) -> None:  # noqa: F811
    with empty_app.app_context():
        migrate.upgrade("0003")
        assert text_index_objects() == set()
    before = add_rows(empty_app, [{"note": "written before the index"}])
    with empty_app.app_context():
        migrate.upgrade("0005")
        assert text_index_objects()
        assert search("before the index") == before
        fts_integrity_check(empty_app)
        db.session.remove()  # no open read transaction: the downgrade drops what it reads

        migrate.downgrade("0003")
        assert text_index_objects() == set()
    after = add_rows(empty_app, [{"note": "written without the index"}])  # no trigger left behind
    with empty_app.app_context():
        migrate.upgrade("head")
        assert search("index") == after + before
        db.session.remove()
        assert audit.verify(db.session, audit.Keyring.from_config(empty_app.config)).ok
