"""invoicing: invoices, their lines, numbering, payment attempts, refunds; the money journal"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, micros, serial, stamps, text, uuid

revision: str = "0007"
down_revision: str | None = "0006"


# The ids of this migration's tables were declared nullable (SQLite then omits NOT NULL;
# PostgreSQL's primary keys are NOT NULL anyway): said again here, so that this migration builds
# what it always built. 0014 makes them NOT NULL.


def upgrade() -> None:
    op.create_table(
        "invoices",
        uuid(primary_key=True, nullable=True),
        text("customer_kind", 8, nullable=False),
        uuid("customer_id", nullable=False),
        sa.Column("number", sa.String(32), unique=True),
        text("status", 16, nullable=False),
        text("description", 500, nullable=False),
        text("customer_email", 320),
        text("customer_name", 200),
        text("country", 2),
        text("tax_rate", 16, nullable=False),
        micros("subtotal_micros"),
        micros("tax_micros"),
        micros("total_micros"),
        micros("amount_paid_micros"),
        micros("amount_refunded_micros"),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        text("charge_id", 255),
        at("created_at"),
        at("finalized_at", True),
        at("paid_at", True),
        at("closed_at", True),
        at("updated_at"),
        sa.CheckConstraint(
            "amount_refunded_micros >= 0 AND amount_refunded_micros <= amount_paid_micros",
            name="ck_invoices_refund_bounded",
        ),
    )
    op.create_index("ix_invoices_customer", "invoices", ["customer_id", "created_at", "id"])
    op.create_index("ix_invoices_status", "invoices", ["status", "created_at"])
    op.create_table(
        "invoice_lines",
        uuid(primary_key=True, nullable=True),
        uuid(
            "invoice_id",
            sa.ForeignKey("invoices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        text("kind", 16, nullable=False),
        text("description", 500, nullable=False),
        micros("amount_micros"),
        text("reference", 128),
    )
    op.create_index("ix_invoice_lines_invoice", "invoice_lines", ["invoice_id", "position"])
    op.create_table(
        "invoice_counters",
        sa.Column("prefix", sa.String(16), primary_key=True),
        micros("next_value"),
    )
    op.create_table(
        "invoice_payment_attempts",
        uuid(primary_key=True, nullable=True),
        uuid("invoice_id", sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        text("status", 16, nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        text("processor_customer_id", 255, nullable=False),
        text("payment_method_id", 255),
        text("charge_id", 255),
        text("failure_code", 64),
        text("failure_message", 500),
        *stamps(),
    )
    op.create_index(
        "ix_invoice_payment_attempts_status", "invoice_payment_attempts", ["status", "created_at"]
    )
    op.create_index(
        "ux_invoice_payment_attempts_attempt",
        "invoice_payment_attempts",
        ["invoice_id", "attempt"],
        unique=True,
    )
    op.create_table(
        "invoice_refunds",
        uuid(primary_key=True, nullable=True),
        uuid("invoice_id", sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        micros("credits_micros"),
        text("status", 16, nullable=False),
        text("processor_refund_id", 255),
        text("actor", 64, nullable=False),
        *stamps(),
    )
    op.create_index("ix_invoice_refunds_invoice", "invoice_refunds", ["invoice_id", "created_at"])
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        text("value", 128, nullable=False),
        at("created_at"),
    )
    op.create_table(
        "journal_accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        text("kind", 24, nullable=False),
        uuid("customer_id"),
        micros("balance_micros"),
        at("updated_at"),
    )
    op.create_table(
        "journal_postings",
        serial(),
        text("kind", 24, nullable=False),
        uuid("invoice_id"),
        text("processor_ref", 255),
        text("memo", 500, nullable=False),
        at("created_at"),
    )
    op.create_index("ix_journal_postings_invoice", "journal_postings", ["invoice_id", "id"])
    op.create_table(
        "journal_lines",
        serial(),
        sa.Column(
            "posting_id", sa.BigInteger(), sa.ForeignKey("journal_postings.id"), nullable=False
        ),
        sa.Column(
            "account_id", sa.String(64), sa.ForeignKey("journal_accounts.id"), nullable=False
        ),
        micros("amount_micros"),
    )
    op.create_index("ix_journal_lines_account", "journal_lines", ["account_id"])
    op.create_index("ix_journal_lines_posting", "journal_lines", ["posting_id"])


def downgrade() -> None:
    for table in (
        "journal_lines",
        "journal_postings",
        "journal_accounts",
        "server_secrets",
        "invoice_refunds",
        "invoice_payment_attempts",
        "invoice_counters",
        "invoice_lines",
        "invoices",
    ):
        op.drop_table(table)
