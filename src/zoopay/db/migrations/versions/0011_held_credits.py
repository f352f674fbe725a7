"""held credits: a downgrade's credit for the rest of a fee not paid yet"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, micros, text, uuid

revision: str = "0011"
down_revision: str | None = "0010"


def upgrade() -> None:
    op.create_table(
        "held_credits",
        uuid("invoice_id", primary_key=True),
        uuid("customer_id", nullable=False),
        text("customer_kind", 8, nullable=False),
        micros("credit_micros"),
        at("created_at"),
        at("updated_at"),
        sa.CheckConstraint("credit_micros > 0", name="ck_held_credits_positive"),
    )


def downgrade() -> None:
    op.drop_table("held_credits")
