"""audit viewer: the free-text index covers the detail too, not only params

The viewer's free-text filter now matches the detail JSON as well (who was
added to which group, a run's error, an output excerpt). Without an index a
term that matches few rows would scan the ledger again (revision 0005's
measurements), so:

- SQLite: the FTS5 trigram table is rebuilt with two columns, ``params`` and
  ``detail`` (still external-content over ``audit_events``), its triggers
  recreated to keep both in step, and the existing rows indexed.
- PostgreSQL: a second GIN trigram index, on ``detail::text``; the filter's
  ``params::text ILIKE x OR detail::text ILIKE x`` uses both (a BitmapOr).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

FTS_TABLE = "audit_events_fts"
PG_INDEX = "ix_audit_events_detail_trgm"


def _sqlite_statements(columns: tuple[str, ...]) -> tuple[str, ...]:
    """Drop the FTS table and its triggers, then create them over ``columns`` and index the ledger."""
    names = ", ".join(columns)
    new = ", ".join(f"new.{column}" for column in columns)
    old = ", ".join(f"old.{column}" for column in columns)
    delete = f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {names}) VALUES ('delete', old.seq, {old});"
    insert = f"INSERT INTO {FTS_TABLE}(rowid, {names}) VALUES (new.seq, {new});"
    return (
        f"DROP TRIGGER IF EXISTS {FTS_TABLE}_update",
        f"DROP TRIGGER IF EXISTS {FTS_TABLE}_delete",
        f"DROP TRIGGER IF EXISTS {FTS_TABLE}_insert",
        f"DROP TABLE IF EXISTS {FTS_TABLE}",
        f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5("
        f"{names}, content='audit_events', content_rowid='seq', tokenize='trigram')",
        f"CREATE TRIGGER {FTS_TABLE}_insert AFTER INSERT ON audit_events BEGIN {insert} END",
        f"CREATE TRIGGER {FTS_TABLE}_delete AFTER DELETE ON audit_events BEGIN {delete} END",
        f"CREATE TRIGGER {FTS_TABLE}_update AFTER UPDATE ON audit_events BEGIN {delete} {insert} END",
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX {PG_INDEX} ON audit_events USING gin ((detail::text) gin_trgm_ops)")
        return
    for statement in _sqlite_statements(("params", "detail")):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {PG_INDEX}")
        return
    for statement in _sqlite_statements(("params",)):
        op.execute(statement)
