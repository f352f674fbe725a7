"""drop processor_portal_sessions: the card page is the console's billing page, entered by a
console sign-in link (console_links, console_sessions); the table was never written"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, text

revision: str = "0012"
down_revision: str | None = "0011"


def upgrade() -> None:
    op.drop_table("processor_portal_sessions")


def downgrade() -> None:
    op.create_table(
        "processor_portal_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "customer_id", sa.String(64), sa.ForeignKey("processor_customers.id"), nullable=False
        ),
        sa.Column("link_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("session_hash", sa.String(64), nullable=True, unique=True),
        text("return_url", 2048, nullable=False),
        at("created_at"),
        at("link_expires_at"),
        at("opened_at", nullable=True),
        at("session_expires_at", nullable=True),
    )
