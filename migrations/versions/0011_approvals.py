"""approvals: requests that wait for a second person, and each approver's decision

A run that needs approval is a run row from its request on (status
pending_approval); approval_requests keeps its side: how many approvals it
needs, when it expires (by the database clock; the lease supervisor sweeps
expired ones), its state, and the request's secret values sealed with
gateway.platform.secretbox until the run starts or the request ends.
approval_decisions keeps one row per approver and request (its key makes each
approver count once), with the approver's comment.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("command", sa.String(length=100), nullable=False),
        sa.Column("min_approvals", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sealed_secrets", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_approval_requests_command", "approval_requests", ["command"])
    op.create_index("ix_approval_requests_state_expires", "approval_requests", ["state", "expires_at"])
    op.create_table(
        "approval_decisions",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("approver_id", sa.Integer(), nullable=False),
        sa.Column("approver_name", sa.String(length=150), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("source_ip", sa.String(length=45), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["approval_requests.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "approver_id"),
    )


def downgrade() -> None:
    op.drop_table("approval_decisions")
    op.drop_index("ix_approval_requests_state_expires", table_name="approval_requests")
    op.drop_index("ix_approval_requests_command", table_name="approval_requests")
    op.drop_table("approval_requests")
