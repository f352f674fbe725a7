"""monthly grants: what each billing period granted, so plan flips cannot mint credits"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, micros, uuid

revision: str = "0003"
down_revision: str | None = "0002"

# The current period of every subscription, with what its ledger shows entering the monthly
# bucket by grant, plan change or refresh since the period began: the most this period can
# have granted. The catalog (the plans' grants) is not known here, so the largest grant held
# is taken as what was granted; a later upgrade raises it.
_BACKFILL = """
INSERT INTO monthly_grants
    (customer_id, period_start, granted_micros, largest_grant_micros, updated_at)
SELECT s.customer_id, s.period_start,
       COALESCE(SUM(e.delta_micros), 0), COALESCE(SUM(e.delta_micros), 0), s.updated_at
FROM subscriptions s
LEFT JOIN ledger_entries e
    ON e.customer_id = s.customer_id
    AND e.bucket = 'monthly'
    AND e.delta_micros > 0
    AND e.reason IN ('grant', 'plan_change', 'refresh')
    AND e.created_at >= s.period_start
GROUP BY s.customer_id, s.period_start, s.updated_at
"""


def upgrade() -> None:
    op.create_table(
        "monthly_grants",
        uuid("customer_id", primary_key=True),
        sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
        micros("granted_micros"),
        micros("largest_grant_micros"),
        at("updated_at"),
        sa.CheckConstraint(
            "granted_micros >= 0 AND granted_micros <= largest_grant_micros",
            name="ck_monthly_grants_bounded",
        ),
    )
    op.execute(_BACKFILL)


def downgrade() -> None:
    op.drop_table("monthly_grants")
