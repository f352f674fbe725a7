"""plan change payments: a paid upgrade's invoice until the change it pays for is applied"""

from alembic import op

from zoopay.db.migrations.columns import at, text, uuid

revision: str = "0013"
down_revision: str | None = "0012"


def upgrade() -> None:
    op.create_table(
        "plan_change_payments",
        uuid("invoice_id", primary_key=True),
        text("customer_kind", 8, nullable=False),
        uuid("customer_id", nullable=False),
        text("tier", 32, nullable=False),
        text("status", 16, nullable=False),
        at("created_at"),
        at("updated_at"),
    )
    op.create_index(
        "ix_plan_change_payments_status", "plan_change_payments", ["status", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_plan_change_payments_status", "plan_change_payments")
    op.drop_table("plan_change_payments")
