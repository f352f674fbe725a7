"""console: sign-in links, sessions, and a person's note on a ledger entry"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, text, uuid

revision: str = "0010"
down_revision: str | None = "0009"


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch_op:
        batch_op.add_column(text("note", 500))
    op.create_table(
        "console_links",
        uuid("id", primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        uuid("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        text("created_by", 64, nullable=False),
        at("created_at"),
        at("expires_at"),
        at("used_at", nullable=True),
    )
    op.create_table(
        "console_sessions",
        uuid("id", primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        uuid("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        uuid("token_id", sa.ForeignKey("api_tokens.id", ondelete="CASCADE")),
        at("created_at"),
        at("expires_at"),
        at("ended_at", nullable=True),
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_table("console_links")
    with op.batch_alter_table("ledger_entries") as batch_op:
        batch_op.drop_column("note")
