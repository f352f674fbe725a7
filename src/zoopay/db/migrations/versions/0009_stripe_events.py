"""stripe: the webhook events received, each applied once"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, text

revision: str = "0009"
# After payments (0006) and invoicing (0007), both merged on this branch; the lead re-chains.
down_revision: str | None = "0008"


def upgrade() -> None:
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(255), primary_key=True),
        text("type", 100, nullable=False),
        text("object_id", 255),
        text("outcome", 16, nullable=False),
        at("received_at"),
    )


def downgrade() -> None:
    op.drop_table("stripe_events")
