"""payments: billing information, usage thresholds, and the embedded processor's own tables

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.String(length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "payment_customers",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        _text("customer_kind", 8, nullable=False),
        _text("processor", 16, nullable=False),
        _text("processor_customer_id", 64, nullable=False),
        _text("name", 200),
        _text("phone", 64, nullable=False),
        _text("address_country", 2),
        _text("address_state", 200),
        _text("address_city", 200),
        _text("address_street1", 200),
        _text("address_street2", 200),
        _text("address_zip", 32),
        _text("vat_id", 32),
        _when("billing_info_at", nullable=True),
        sa.Column("delinquent", sa.Boolean, nullable=False),
        _when("created_at"),
        _when("updated_at"),
    )
    op.create_index(
        "ux_payment_customers_processor",
        "payment_customers",
        ["processor", "processor_customer_id"],
        unique=True,
    )
    op.create_table(
        "usage_thresholds",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        _text("customer_kind", 8, nullable=False),
        sa.Column("customer_amount_micros", sa.BigInteger, nullable=True),
        sa.Column("admin_amount_micros", sa.BigInteger, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        _when("updated_at"),
    )
    op.create_table(
        "processor_customers",
        sa.Column("id", sa.String(64), primary_key=True),
        _text("email", 320, nullable=False),
        _text("name", 200),
        _text("metadata", 4000, nullable=False),
        _text("default_payment_method_id", 64),
        _when("created_at"),
        _when("updated_at"),
    )
    op.create_table(
        "processor_payment_methods",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("processor_customers.id"),
            nullable=False,
        ),
        _text("token", 64, nullable=False),
        _text("brand", 32, nullable=False),
        _text("last4", 4, nullable=False),
        sa.Column("exp_month", sa.Integer, nullable=False),
        sa.Column("exp_year", sa.Integer, nullable=False),
        _text("country", 2),
        _text("funding", 16),
        _text("fingerprint", 32, nullable=False),
        _when("created_at"),
        _when("detached_at", nullable=True),
    )
    op.create_index(
        "ix_processor_payment_methods_customer",
        "processor_payment_methods",
        ["customer_id", "created_at"],
    )
    op.create_table(
        "processor_setup_intents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("processor_customers.id"),
            nullable=False,
        ),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        _text("status", 32, nullable=False),
        _text("payment_method_id", 64),
        _when("created_at"),
        _when("confirmed_at", nullable=True),
    )
    op.create_table(
        "processor_charges",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("processor_customers.id"),
            nullable=False,
        ),
        _text("payment_method_id", 64),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        _text("currency", 3, nullable=False),
        _text("description", 1000, nullable=False),
        _text("status", 32, nullable=False),
        _text("failure_code", 64),
        _text("failure_message", 500),
        _when("created_at"),
        sa.CheckConstraint("amount_cents > 0", name="ck_processor_charges_positive"),
    )
    op.create_table(
        "processor_refunds",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column(
            "charge_id", sa.String(64), sa.ForeignKey("processor_charges.id"), nullable=False
        ),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        _text("status", 32, nullable=False),
        _when("created_at"),
        sa.CheckConstraint("amount_cents > 0", name="ck_processor_refunds_positive"),
    )
    op.create_index("ix_processor_refunds_charge", "processor_refunds", ["charge_id"])
    op.create_table(
        "processor_portal_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("processor_customers.id"),
            nullable=False,
        ),
        sa.Column("link_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("session_hash", sa.String(64), nullable=True, unique=True),
        _text("return_url", 2048, nullable=False),
        _when("created_at"),
        _when("link_expires_at"),
        _when("opened_at", nullable=True),
        _when("session_expires_at", nullable=True),
    )


def downgrade() -> None:
    for table in (
        "processor_portal_sessions",
        "processor_refunds",
        "processor_charges",
        "processor_setup_intents",
        "processor_payment_methods",
        "processor_customers",
        "usage_thresholds",
        "payment_customers",
    ):
        op.drop_table(table)
