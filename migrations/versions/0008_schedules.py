"""schedules: each schedule's state (since, paused) and its claimed occurrences

schedule_occurrences' primary key (schedule, scheduled_for) is the claim: a
replica inserts it with ON CONFLICT DO NOTHING in the transaction that records
the occurrence's run (or its refusal), so each occurrence runs exactly once
across replicas. schedule_states keeps the pause switch and the instant a
schedule counts from (first seen, or resumed), so nothing before is caught up.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedule_states",
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=150), nullable=True),
        sa.PrimaryKeyConstraint("schedule"),
    )
    op.create_table(
        "schedule_occurrences",
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("schedule", "scheduled_for"),
    )
    op.create_index("ix_schedule_occurrences_run_id", "schedule_occurrences", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_schedule_occurrences_run_id", table_name="schedule_occurrences")
    op.drop_table("schedule_occurrences")
    op.drop_table("schedule_states")
