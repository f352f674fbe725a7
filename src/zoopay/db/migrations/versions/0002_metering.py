"""metering: API calls, service tokens

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.String(36), nullable=True)
        batch_op.add_column(sa.Column("service_name", sa.String(100), nullable=True))
    op.create_table(
        "api_calls",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("price_micros", sa.BigInteger(), nullable=False),
        sa.Column("ip_address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=False),
        sa.Column("origin", sa.String(512), nullable=True),
        sa.Column("token", sa.String(36), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_api_calls_user", "api_calls", ["user_id", "created_at", "id"])
    op.create_index("ix_api_calls_org", "api_calls", ["org_id", "created_at", "id"])
    op.create_index("ix_api_calls_created", "api_calls", ["created_at", "id"])


def downgrade() -> None:
    op.drop_table("api_calls")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("service_name")
        batch_op.alter_column("user_id", existing_type=sa.String(36), nullable=False)
