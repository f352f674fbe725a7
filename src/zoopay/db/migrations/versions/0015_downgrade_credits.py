"""what was paid toward a plan and until when, and downgrade credits: a downgrade's bound

`billing_closes.fee_until` and `plan_change_payments.fee_until`: where the fee period that a
close's fee, or a paid upgrade, pays for ends (NULL before this: read as a fee period of the
plan the customer is on). `downgrade_credits`: each downgrade's credit, with the end of the fee
period of the plan it left the customer on. Together they say what of the plan fees paid is
unused at a moment, the most a downgrade credits (billing.upgrades.unused_paid).
"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, customer, micros, serial

revision: str = "0015"
down_revision: str | None = "0014"


def upgrade() -> None:
    for table in ("billing_closes", "plan_change_payments"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(at("fee_until", nullable=True))
    op.create_table(
        "downgrade_credits",
        serial(),
        *customer(),
        micros("credit_micros"),
        at("created_at"),
        at("until"),
        sa.CheckConstraint("credit_micros > 0", name="ck_downgrade_credits_positive"),
    )
    op.create_index("ix_downgrade_credits_customer", "downgrade_credits", ["customer_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_downgrade_credits_customer", "downgrade_credits")
    op.drop_table("downgrade_credits")
    for table in ("plan_change_payments", "billing_closes"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("fee_until")
