"""audit viewer: (outcome, seq) and (source_ip, seq) indexes

The admin audit viewer filters by outcome and by source address and pages by
seq; without these the filter scans the ledger (measured: ~10 ms at 50,000
rows on SQLite, growing with the table).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# Plain create/drop index, not batch mode: batch may recreate the table on SQLite, which would
# drop the append-only trigger with it.
def upgrade() -> None:
    op.create_index("ix_audit_events_outcome_seq", "audit_events", ["outcome", "seq"], unique=False)
    op.create_index("ix_audit_events_source_ip_seq", "audit_events", ["source_ip", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_events_source_ip_seq", table_name="audit_events")
    op.drop_index("ix_audit_events_outcome_seq", table_name="audit_events")
