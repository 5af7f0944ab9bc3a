"""user invites ("set your password" links) and one-time reveals (post/redirect/get for secrets)

user_invites keeps only the SHA-256 of each invite link's token, with its
expiry and when it was used or revoked. one_time_reveals holds, per browser
session, a secret XOR a pad kept in the session cookie, until the page after
the redirect shows it once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_invites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=150), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_user_invites_user_id", "user_invites", ["user_id"], unique=False)
    op.create_table(
        "one_time_reveals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("masked", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["user_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_one_time_reveals_session_id", "one_time_reveals", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_one_time_reveals_session_id", table_name="one_time_reveals")
    op.drop_table("one_time_reveals")
    op.drop_index("ix_user_invites_user_id", table_name="user_invites")
    op.drop_table("user_invites")
