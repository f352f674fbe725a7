"""billing: period close (closed periods, what each closed), downgrades at period end"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, micros, stamps, text, uuid

revision: str = "0008"
down_revision: str | None = "0007"


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.add_column(at("closed_through", nullable=True))
        batch_op.add_column(text("pending_tier", 32))
    # Existing subscriptions: their current period is the open one; it closes when it ends.
    op.execute("UPDATE subscriptions SET closed_through = period_start")
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.alter_column(
            "closed_through", existing_type=sa.DateTime(timezone=True), nullable=False
        )
    op.create_index("ix_subscriptions_closed_through", "subscriptions", ["closed_through"])
    op.create_table(
        "billing_closes",
        uuid("customer_id", primary_key=True),
        sa.Column("period_end", sa.DateTime(timezone=True), primary_key=True),
        text("customer_kind", 8, nullable=False),
        at("period_start"),
        text("tier", 32, nullable=False),
        text("next_tier", 32, nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        micros("fee_micros"),
        micros("usage_micros"),
        text("status", 16, nullable=False),
        uuid("invoice_id", nullable=True),
        *stamps(),
        sa.CheckConstraint(
            "fee_micros >= 0 AND usage_micros >= 0 AND seats >= 0",
            name="ck_billing_closes_amounts",
        ),
    )
    op.create_index("ix_billing_closes_status", "billing_closes", ["status", "customer_id"])
    op.create_table(
        "billing_credits",
        uuid("customer_id", primary_key=True),
        text("customer_kind", 8, nullable=False),
        micros("credit_micros"),
        at("updated_at"),
        sa.CheckConstraint("credit_micros >= 0", name="ck_billing_credits_positive"),
    )


def downgrade() -> None:
    op.drop_table("billing_credits")
    op.drop_index("ix_billing_closes_status", "billing_closes")
    op.drop_table("billing_closes")
    op.drop_index("ix_subscriptions_closed_through", "subscriptions")
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.drop_column("pending_tier")
        batch_op.drop_column("closed_through")
