"""audit forwarding: one cursor per destination, with the lease of the process forwarding it

audit_forward_cursors holds, per configured destination, the newest ledger seq
(and its hash) the destination acknowledged, when it last succeeded or began
failing (a reason from a closed set), and the lease (holder, expiry by the
database clock) that keeps one forwarder per destination across replicas.
Forwarding writes nothing else: no outbox rows, no ledger events per batch.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_forward_cursors",
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=16), nullable=True),
        sa.Column("lease_holder", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("destination"),
    )


def downgrade() -> None:
    op.drop_table("audit_forward_cursors")
