"""org invitations: no one joins an org without their consent"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, stamps, text, uuid

revision: str = "0004"
down_revision: str | None = "0003"

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "org_invitations",
        uuid("id", primary_key=True),
        sa.Column(
            "org_id", sa.String(36), sa.ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False
        ),
        text("email", 320, nullable=False),
        text("role", 16, nullable=False),
        text("status", 16, nullable=False),
        uuid("invited_by", nullable=False),
        *stamps(),
        at("expires_at"),
    )
    op.create_index(
        "ux_org_invitations_pending",
        "org_invitations",
        ["org_id", "email"],
        unique=True,
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    op.create_index("ix_org_invitations_email", "org_invitations", ["email", "created_at", "id"])
    op.create_index("ix_org_invitations_org", "org_invitations", ["org_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("org_invitations")
