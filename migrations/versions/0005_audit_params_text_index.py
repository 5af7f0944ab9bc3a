"""audit viewer: a text index for free-text search over params

The viewer's free-text filter is a case-insensitive substring match over the
params JSON. Without an index a term that matches few rows scans the whole
ledger (measured: ~1.3-1.9 s at one million rows on either engine).

- SQLite: an FTS5 table with the trigram tokenizer (substring matching), an
  external-content table over ``audit_events`` (the text is not stored twice),
  kept in step by triggers: AFTER INSERT (``append``), AFTER DELETE (``audit
  prune``) and AFTER UPDATE (refused by ``audit_events_no_update``; present
  so the index stays true should that guard ever be dropped).
- PostgreSQL: a GIN trigram index (pg_trgm) on ``params::text``, the
  expression the filter's ILIKE uses. pg_trgm is a trusted extension, but
  creating it needs CREATE on the database: deploy/postgres-roles.sql creates
  it as the superuser, so the owner's upgrade finds it installed.

Neither object is in the models' metadata; migrations/env.py keeps the FTS
table and its shadow tables out of ``db check``'s comparison.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FTS_TABLE = "audit_events_fts"
PG_INDEX = "ix_audit_events_params_trgm"

# Plain statements, not batch mode: batch may recreate audit_events on SQLite, which would drop
# its triggers (the append-only guard and these).
SQLITE_UPGRADE = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5("
    "params, content='audit_events', content_rowid='seq', tokenize='trigram')",
    f"CREATE TRIGGER {FTS_TABLE}_insert AFTER INSERT ON audit_events BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, params) VALUES (new.seq, new.params); END",
    f"CREATE TRIGGER {FTS_TABLE}_delete AFTER DELETE ON audit_events BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, params) VALUES ('delete', old.seq, old.params); END",
    f"CREATE TRIGGER {FTS_TABLE}_update AFTER UPDATE ON audit_events BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, params) VALUES ('delete', old.seq, old.params); "
    f"INSERT INTO {FTS_TABLE}(rowid, params) VALUES (new.seq, new.params); END",
    # Index the rows already in the ledger.
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",
)
SQLITE_DOWNGRADE = (
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_update",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_delete",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_insert",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
)
PG_UPGRADE = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX {PG_INDEX} ON audit_events USING gin ((params::text) gin_trgm_ops)",
)
PG_DOWNGRADE = (
    f"DROP INDEX IF EXISTS {PG_INDEX}",
    # The extension goes too, unless something else uses it or it is not ours to drop
    # (installed by the superuser through deploy/postgres-roles.sql).
    "DO $$ BEGIN DROP EXTENSION IF EXISTS pg_trgm; "
    "EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN NULL; END $$",
)


def _run(statements: tuple[str, ...]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    _run(PG_UPGRADE if op.get_bind().dialect.name == "postgresql" else SQLITE_UPGRADE)


def downgrade() -> None:
    _run(PG_DOWNGRADE if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWNGRADE)
