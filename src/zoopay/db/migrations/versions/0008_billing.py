"""billing: period close (closed periods, what each closed), downgrades at period end

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.add_column(sa.Column("closed_through", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pending_tier", sa.String(32), nullable=True))
    # Existing subscriptions: their current period is the open one; it closes when it ends.
    op.execute("UPDATE subscriptions SET closed_through = period_start")
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.alter_column(
            "closed_through", existing_type=sa.DateTime(timezone=True), nullable=False
        )
    op.create_index("ix_subscriptions_closed_through", "subscriptions", ["closed_through"])
    op.create_table(
        "billing_closes",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("period_end", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("customer_kind", sa.String(8), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("next_tier", sa.String(32), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("fee_micros", sa.BigInteger(), nullable=False),
        sa.Column("usage_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("invoice_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "fee_micros >= 0 AND usage_micros >= 0 AND seats >= 0",
            name="ck_billing_closes_amounts",
        ),
    )
    op.create_index("ix_billing_closes_status", "billing_closes", ["status", "customer_id"])
    op.create_table(
        "billing_credits",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("customer_kind", sa.String(8), nullable=False),
        sa.Column("credit_micros", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
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
