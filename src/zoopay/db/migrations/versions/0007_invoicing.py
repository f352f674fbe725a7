"""invoicing: invoices, their lines, numbering, payment attempts, refunds; the money journal

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id(
    name: str = "id",
    *args: sa.ForeignKey,
    primary_key: bool = False,
    nullable: bool = True,
) -> sa.Column[str]:
    return sa.Column(name, sa.String(36), *args, primary_key=primary_key, nullable=nullable)


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _micros(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def _serial() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_table(
        "invoices",
        _id(primary_key=True),
        sa.Column("customer_kind", sa.String(8), nullable=False),
        _id("customer_id", nullable=False),
        sa.Column("number", sa.String(32), unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("customer_email", sa.String(320)),
        sa.Column("customer_name", sa.String(200)),
        sa.Column("country", sa.String(2)),
        sa.Column("tax_rate", sa.String(16), nullable=False),
        _micros("subtotal_micros"),
        _micros("tax_micros"),
        _micros("total_micros"),
        _micros("amount_paid_micros"),
        _micros("amount_refunded_micros"),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("charge_id", sa.String(255)),
        _at("created_at"),
        _at("finalized_at", True),
        _at("paid_at", True),
        _at("closed_at", True),
        _at("updated_at"),
        sa.CheckConstraint(
            "amount_refunded_micros >= 0 AND amount_refunded_micros <= amount_paid_micros",
            name="ck_invoices_refund_bounded",
        ),
    )
    op.create_index("ix_invoices_customer", "invoices", ["customer_id", "created_at", "id"])
    op.create_index("ix_invoices_status", "invoices", ["status", "created_at"])
    op.create_table(
        "invoice_lines",
        _id(primary_key=True),
        _id(
            "invoice_id",
            sa.ForeignKey("invoices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        _micros("amount_micros"),
        sa.Column("reference", sa.String(128)),
    )
    op.create_index("ix_invoice_lines_invoice", "invoice_lines", ["invoice_id", "position"])
    op.create_table(
        "invoice_counters",
        sa.Column("prefix", sa.String(16), primary_key=True),
        sa.Column("next_value", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "invoice_payment_attempts",
        _id(primary_key=True),
        _id("invoice_id", sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("processor_customer_id", sa.String(255), nullable=False),
        sa.Column("payment_method_id", sa.String(255)),
        sa.Column("charge_id", sa.String(255)),
        sa.Column("failure_code", sa.String(64)),
        sa.Column("failure_message", sa.String(500)),
        _at("created_at"),
        _at("updated_at"),
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
        _id(primary_key=True),
        _id("invoice_id", sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        _micros("credits_micros"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("processor_refund_id", sa.String(255)),
        sa.Column("actor", sa.String(64), nullable=False),
        _at("created_at"),
        _at("updated_at"),
    )
    op.create_index("ix_invoice_refunds_invoice", "invoice_refunds", ["invoice_id", "created_at"])
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "journal_accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(24), nullable=False),
        _id("customer_id"),
        _micros("balance_micros"),
        _at("updated_at"),
    )
    op.create_table(
        "journal_postings",
        _serial(),
        sa.Column("kind", sa.String(24), nullable=False),
        _id("invoice_id"),
        sa.Column("processor_ref", sa.String(255)),
        sa.Column("memo", sa.String(500), nullable=False),
        _at("created_at"),
    )
    op.create_index("ix_journal_postings_invoice", "journal_postings", ["invoice_id", "id"])
    op.create_table(
        "journal_lines",
        _serial(),
        sa.Column(
            "posting_id", sa.BigInteger(), sa.ForeignKey("journal_postings.id"), nullable=False
        ),
        sa.Column(
            "account_id", sa.String(64), sa.ForeignKey("journal_accounts.id"), nullable=False
        ),
        _micros("amount_micros"),
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
