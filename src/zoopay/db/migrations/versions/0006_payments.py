"""payments: billing information, usage thresholds, and the embedded processor's own tables"""

import sqlalchemy as sa
from alembic import op

from zoopay.db.migrations.columns import at, micros, stamps, text, uuid

revision: str = "0006"
down_revision: str | None = "0005"


def _processor_id() -> sa.Column[str]:
    """The id of a row of the embedded processor (`cus_...`, `pm_...`: not a UUID)."""
    return sa.Column("id", sa.String(64), primary_key=True)


def _processor_customer() -> sa.Column[str]:
    return sa.Column(
        "customer_id", sa.String(64), sa.ForeignKey("processor_customers.id"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "payment_customers",
        uuid("customer_id", primary_key=True),
        text("customer_kind", 8, nullable=False),
        text("processor", 16, nullable=False),
        text("processor_customer_id", 64, nullable=False),
        text("name", 200),
        text("phone", 64, nullable=False),
        text("address_country", 2),
        text("address_state", 200),
        text("address_city", 200),
        text("address_street1", 200),
        text("address_street2", 200),
        text("address_zip", 32),
        text("vat_id", 32),
        at("billing_info_at", nullable=True),
        sa.Column("delinquent", sa.Boolean, nullable=False),
        *stamps(),
    )
    op.create_index(
        "ux_payment_customers_processor",
        "payment_customers",
        ["processor", "processor_customer_id"],
        unique=True,
    )
    op.create_table(
        "usage_thresholds",
        uuid("customer_id", primary_key=True),
        text("customer_kind", 8, nullable=False),
        micros("customer_amount_micros", nullable=True),
        micros("admin_amount_micros", nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        at("updated_at"),
    )
    op.create_table(
        "processor_customers",
        _processor_id(),
        text("email", 320, nullable=False),
        text("name", 200),
        text("metadata", 4000, nullable=False),
        text("default_payment_method_id", 64),
        *stamps(),
    )
    op.create_table(
        "processor_payment_methods",
        _processor_id(),
        _processor_customer(),
        text("token", 64, nullable=False),
        text("brand", 32, nullable=False),
        text("last4", 4, nullable=False),
        sa.Column("exp_month", sa.Integer, nullable=False),
        sa.Column("exp_year", sa.Integer, nullable=False),
        text("country", 2),
        text("funding", 16),
        text("fingerprint", 32, nullable=False),
        at("created_at"),
        at("detached_at", nullable=True),
    )
    op.create_index(
        "ix_processor_payment_methods_customer",
        "processor_payment_methods",
        ["customer_id", "created_at"],
    )
    op.create_table(
        "processor_setup_intents",
        _processor_id(),
        _processor_customer(),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        text("status", 32, nullable=False),
        text("payment_method_id", 64),
        at("created_at"),
        at("confirmed_at", nullable=True),
    )
    op.create_table(
        "processor_charges",
        _processor_id(),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        _processor_customer(),
        text("payment_method_id", 64),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        text("currency", 3, nullable=False),
        text("description", 1000, nullable=False),
        text("status", 32, nullable=False),
        text("failure_code", 64),
        text("failure_message", 500),
        at("created_at"),
        sa.CheckConstraint("amount_cents > 0", name="ck_processor_charges_positive"),
    )
    op.create_table(
        "processor_refunds",
        _processor_id(),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column(
            "charge_id", sa.String(64), sa.ForeignKey("processor_charges.id"), nullable=False
        ),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        text("status", 32, nullable=False),
        at("created_at"),
        sa.CheckConstraint("amount_cents > 0", name="ck_processor_refunds_positive"),
    )
    op.create_index("ix_processor_refunds_charge", "processor_refunds", ["charge_id"])
    op.create_table(
        "processor_portal_sessions",
        _processor_id(),
        _processor_customer(),
        sa.Column("link_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("session_hash", sa.String(64), nullable=True, unique=True),
        text("return_url", 2048, nullable=False),
        at("created_at"),
        at("link_expires_at"),
        at("opened_at", nullable=True),
        at("session_expires_at", nullable=True),
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
