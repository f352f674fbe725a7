"""initial schema

Create Date: 2026-11-22 00:12:19.210918
"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, customer, micros, serial, stamps, text, uuid

revision: str = "0001"
down_revision: str | None = None


def upgrade() -> None:

    op.create_table(
        "balances",
        uuid("id", nullable=False),
        *customer(),
        micros("monthly_micros"),
        micros("stable_micros"),
        micros("total_due_micros"),
        *stamps(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id"),
    )
    op.create_table(
        "ledger_entries",
        serial(),
        uuid("customer_id", nullable=False),
        text("bucket", 16, nullable=False),
        micros("delta_micros"),
        micros("balance_after_micros"),
        text("actor", 64, nullable=False),
        text("reason", 32, nullable=False),
        text("reference", 64),
        at("created_at"),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entries_customer", ["customer_id", "id"], unique=False)

    op.create_table(
        "orgs",
        uuid("id", nullable=False),
        text("name", 200),
        text("billing_email", 320, nullable=False),
        text("domain", 255),
        text("image", 2048),
        text("phone", 64, nullable=False),
        sa.Column("allow_users_in_domain_to_auto_join", sa.Boolean(), nullable=True),
        *stamps(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "subscriptions",
        uuid("id", nullable=False),
        *customer(),
        text("tier", 32, nullable=False),
        sa.Column("pay_annually", sa.Boolean(), nullable=False),
        at("anchor_at"),
        at("period_start"),
        *stamps(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id"),
    )
    op.create_table(
        "users",
        uuid("id", nullable=False),
        text("email", 320, nullable=False),
        text("name", 200),
        sa.Column("is_staff", sa.Boolean(), nullable=False),
        *stamps(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "api_tokens",
        uuid("id", nullable=False),
        uuid("user_id", nullable=False),
        text("token_hash", 64, nullable=False),
        at("created_at"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "enterprise_prices",
        uuid("org_id", nullable=False),
        text("price_type", 16, nullable=False),
        text("interval", 8, nullable=False),
        micros("price_micros"),
        at("updated_at"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("org_id"),
    )
    op.create_table(
        "org_members",
        uuid("org_id", nullable=False),
        uuid("user_id", nullable=False),
        text("role", 16, nullable=False),
        *stamps(),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    with op.batch_alter_table("org_members", schema=None) as batch_op:
        batch_op.create_index("ix_org_members_org", ["org_id", "created_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("org_members", schema=None) as batch_op:
        batch_op.drop_index("ix_org_members_org")

    op.drop_table("org_members")
    op.drop_table("enterprise_prices")
    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("subscriptions")
    op.drop_table("orgs")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_customer")

    op.drop_table("ledger_entries")
    op.drop_table("balances")
