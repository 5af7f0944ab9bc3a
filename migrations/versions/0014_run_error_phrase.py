"""runs.error_phrase: a run's recorded error as a phrase, so a page shows it in its own language

``runs.error`` keeps the English the API, the ledger and the notifications read.
The new nullable JSON column holds the same error's phrase ({"msgid", "values",
"plural", "amount"}, a nested phrase as its own object), which the run page
renders in the page's language. NULL for a plain text and for every run recorded
before this revision: the page then shows ``runs.error`` as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not a batch, as in 0012: a nullable column without constraints needs no table copy on
# SQLite (ADD and DROP COLUMN since SQLite 3.35), and a copy of runs would run the ON DELETE CASCADE of the
# output chunks that point at it when the old table is dropped.


def upgrade() -> None:
    op.add_column("runs", sa.Column("error_phrase", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "error_phrase")
