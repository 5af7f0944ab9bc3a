"""identity beyond local passwords: account sources, IdP bindings, IdP group links

users.source says how an account signs in (local, oidc, header); an IdP account is
bound to (idp_issuer, idp_subject) and later found by that pair only, never by name.
group_members.origin tells memberships an identity provider's groups claim brought
(replaced at every sign-in) from those an admin added by hand (kept).
idp_group_links maps an IdP group name (any string up to 256 characters, such as
``/ops/admins`` or an Entra object id) to a gateway group. user_sessions.method
records how each session was signed in (header mode re-checks those every request).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("source", sa.String(length=16), nullable=False, server_default="local"))
        batch.add_column(sa.Column("idp_issuer", sa.String(length=512), nullable=True))
        batch.add_column(sa.Column("idp_subject", sa.String(length=255), nullable=True))
        batch.create_unique_constraint("uq_users_idp_identity", ["idp_issuer", "idp_subject"])
    with op.batch_alter_table("group_members") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=8), nullable=False, server_default="manual"))
    with op.batch_alter_table("user_sessions") as batch:
        batch.add_column(sa.Column("method", sa.String(length=16), nullable=False, server_default="local"))
    op.create_table(
        "idp_group_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("idp_group", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_id", "idp_group", name="uq_idp_group_links_group_idp"),
    )
    op.create_index("ix_idp_group_links_idp_group", "idp_group_links", ["idp_group"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_idp_group_links_idp_group", table_name="idp_group_links")
    op.drop_table("idp_group_links")
    with op.batch_alter_table("user_sessions") as batch:
        batch.drop_column("method")
    with op.batch_alter_table("group_members") as batch:
        batch.drop_column("origin")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_idp_identity", type_="unique")
        batch.drop_column("idp_subject")
        batch.drop_column("idp_issuer")
        batch.drop_column("source")
