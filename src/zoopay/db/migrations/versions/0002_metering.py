"""metering: API calls, service tokens"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, micros, text, uuid

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.String(36), nullable=True)
        batch_op.add_column(text("service_name", 100))
    op.create_table(
        "api_calls",
        uuid("id", primary_key=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
        uuid("org_id", nullable=True),
        uuid("customer_id", nullable=False),
        text("endpoint", 512, nullable=False),
        text("method", 16, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        at("started_at"),
        at("completed_at"),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        micros("price_micros"),
        text("ip_address", 64, nullable=False),
        text("user_agent", 512, nullable=False),
        text("origin", 512),
        uuid("token", nullable=False),
        text("content_hash", 64, nullable=False),
        at("created_at"),
    )
    op.create_index("ix_api_calls_user", "api_calls", ["user_id", "created_at", "id"])
    op.create_index("ix_api_calls_org", "api_calls", ["org_id", "created_at", "id"])
    op.create_index("ix_api_calls_created", "api_calls", ["created_at", "id"])


def downgrade() -> None:
    op.drop_table("api_calls")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("service_name")
        batch_op.alter_column("user_id", existing_type=sa.String(36), nullable=False)
