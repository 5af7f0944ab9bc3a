"""users.language: the UI language a user chose on the account page

NULL (every existing user) means the browser's Accept-Language decides, as
before; a code from config.SHIPPED_LANGUAGES otherwise.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not a batch: a nullable column without constraints needs no table copy on SQLite
# (ADD and DROP COLUMN since SQLite 3.35), and a copy of users would run the ON DELETE CASCADE of the
# tables that point at it when the old one is dropped.


def upgrade() -> None:
    op.add_column("users", sa.Column("language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "language")
