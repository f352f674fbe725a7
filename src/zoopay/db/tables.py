"""The schema, in SQLAlchemy Core. Amounts are BIGINT micro-dollars; ids are UUID strings."""

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = UtcDateTime()
Id = String(36)


def _stamps() -> tuple[Column[datetime], Column[datetime]]:
    """When a row was made and last changed."""
    return Column("created_at", Timestamp, nullable=False), Column(
        "updated_at", Timestamp, nullable=False
    )


def _serial() -> Column[int]:
    """An id the database counts up (on SQLite, the rowid: an INTEGER primary key)."""
    return Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )


def _processor_customer() -> Column[str]:
    """The embedded processor's customer a row of its tables belongs to."""
    return Column("customer_id", String(64), ForeignKey("processor_customers.id"), nullable=False)


users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200)),
    Column("is_staff", Boolean, nullable=False, default=False),
    *_stamps(),
    # Deleted users keep their row, ledger and calls for the audit trail; their tokens stop.
    Column("deleted_at", Timestamp),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True),
    # A token belongs to a user, to an org (a service account), or to a service (a non-person
    # that reports usage).
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE")),
    Column("org_id", Id, ForeignKey("orgs.id", name="fk_api_tokens_org", ondelete="CASCADE")),
    Column("service_name", String(100)),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(200)),
    # The secret's last characters, so that its owner can tell tokens apart.
    Column("hint", String(8)),
    *_stamps(),
    # Revoked tokens stay, for the calls that name them.
    Column("revoked_at", Timestamp),
    Index("ix_api_tokens_user", "user_id", "created_at", "id"),
    Index("ix_api_tokens_org", "org_id", "created_at", "id"),
)

orgs = Table(
    "orgs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200)),
    Column("billing_email", String(320), nullable=False),
    Column("domain", String(255)),
    Column("image", String(2048)),
    Column("phone", String(64), nullable=False, default=""),
    Column("allow_users_in_domain_to_auto_join", Boolean),
    *_stamps(),
)

org_members = Table(
    "org_members",
    metadata,
    Column("org_id", Id, ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    # A user belongs to at most one org, as in Zoo's API.
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False),
    *_stamps(),
    Index("ix_org_members_org", "org_id", "created_at"),
)

org_invitations = Table(
    "org_invitations",
    metadata,
    Column("id", Id, primary_key=True),
    Column("org_id", Id, ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    # Normalized; no user need have it yet: whoever signs up with it later sees the invitation.
    Column("email", String(320), nullable=False),
    Column("role", String(16), nullable=False),
    # pending, accepted, declined or revoked; decided invitations stay as the record.
    Column("status", String(16), nullable=False),
    Column("invited_by", Id, nullable=False),
    *_stamps(),
    Column("expires_at", Timestamp, nullable=False),
    # One pending invitation per org and email: inviting again renews it.
    Index(
        "ux_org_invitations_pending",
        "org_id",
        "email",
        unique=True,
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
    Index("ix_org_invitations_email", "email", "created_at", "id"),
    Index("ix_org_invitations_org", "org_id", "created_at", "id"),
)

balances = Table(
    "balances",
    metadata,
    Column("id", Id, primary_key=True),
    Column("customer_kind", String(8), nullable=False),
    Column("customer_id", Id, nullable=False, unique=True),
    Column("monthly_micros", BigInteger, nullable=False, default=0),
    Column("stable_micros", BigInteger, nullable=False, default=0),
    Column("total_due_micros", BigInteger, nullable=False, default=0),
    *_stamps(),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    _serial(),
    Column("customer_id", Id, nullable=False),
    Column("bucket", String(16), nullable=False),
    Column("delta_micros", BigInteger, nullable=False),
    Column("balance_after_micros", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("reference", String(64)),
    # Why a person moved it, in their words (a staff change made in the console).
    Column("note", String(500)),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_ledger_entries_customer", "customer_id", "id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("customer_kind", String(8), nullable=False),
    Column("customer_id", Id, nullable=False, unique=True),
    Column("tier", String(32), nullable=False),
    Column("pay_annually", Boolean, nullable=False, default=False),
    # Monthly periods start at anchor + k months; period_start is the one last granted.
    Column("anchor_at", Timestamp, nullable=False),
    Column("period_start", Timestamp, nullable=False),
    *_stamps(),
    # The start of the billing period still open: every period before it is closed (invoiced
    # by `zoopay billing run`, or found to owe nothing).
    Column("closed_through", Timestamp, nullable=False),
    # A downgrade chosen during a paid period: it takes effect when that period closes.
    Column("pending_tier", String(32)),
    Index("ix_subscriptions_closed_through", "closed_through"),
)

billing_closes = Table(
    "billing_closes",
    metadata,
    # One row per customer and closed period, claimed in the transaction that moves the
    # subscription's `closed_through` past it: a rerun finds it and never closes it again.
    Column("customer_id", Id, primary_key=True),
    Column("period_end", Timestamp, primary_key=True),
    Column("customer_kind", String(8), nullable=False),
    Column("period_start", Timestamp, nullable=False),
    # The plan of the period that ended, and the plan of the one that begins (after a
    # downgrade that waited for the period end).
    Column("tier", String(32), nullable=False),
    Column("next_tier", String(32), nullable=False),
    Column("seats", Integer, nullable=False),
    # The fee for the period that begins, and the usage (total_due) of the one that ended
    # that no earlier invoice billed.
    Column("fee_micros", BigInteger, nullable=False),
    Column("usage_micros", BigInteger, nullable=False),
    # claimed (to invoice), invoiced (an invoice exists: charging is dunning's), nothing_due.
    Column("status", String(16), nullable=False),
    Column("invoice_id", Id),
    *_stamps(),
    # Where the fee period that `fee_micros` pays for ends (a month or a year on); NULL for a
    # close with no fee, and for closes made before it was recorded.
    Column("fee_until", Timestamp),
    CheckConstraint(
        "fee_micros >= 0 AND usage_micros >= 0 AND seats >= 0", name="ck_billing_closes_amounts"
    ),
    Index("ix_billing_closes_status", "status", "customer_id"),
)

billing_credits = Table(
    "billing_credits",
    metadata,
    # Money owed back to a customer for the unused rest of a plan they moved down from: taken
    # off their next invoices (billing.run), never paid out as API credits.
    Column("customer_id", Id, primary_key=True),
    Column("customer_kind", String(8), nullable=False),
    Column("credit_micros", BigInteger, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    CheckConstraint("credit_micros >= 0", name="ck_billing_credits_positive"),
)

held_credits = Table(
    "held_credits",
    metadata,
    # A downgrade's credit for the unused rest of a fee that is not paid yet: it becomes a
    # billing credit when that invoice is paid, and is dropped when it is voided (an unpaid
    # fee credited at once would be service paid for by nobody once dunning writes it off).
    # No foreign key: its check would lock the invoice row, and a downgrade holding the balance
    # lock would then wait for a payment that waits for that balance lock (a deadlock).
    Column("invoice_id", Id, primary_key=True),
    Column("customer_id", Id, nullable=False),
    Column("customer_kind", String(8), nullable=False),
    Column("credit_micros", BigInteger, nullable=False),
    *_stamps(),
    CheckConstraint("credit_micros > 0", name="ck_held_credits_positive"),
)

downgrade_credits = Table(
    "downgrade_credits",
    metadata,
    # Each downgrade's credit, with the end of the fee period of the plan it left the customer
    # on: with the closes' fees and the paid upgrades, what of the fees paid is unused at a
    # moment (billing.upgrades.unused_paid), the most a downgrade credits.
    _serial(),
    Column("customer_kind", String(8), nullable=False),
    Column("customer_id", Id, nullable=False),
    Column("credit_micros", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("until", Timestamp, nullable=False),
    CheckConstraint("credit_micros > 0", name="ck_downgrade_credits_positive"),
    Index("ix_downgrade_credits_customer", "customer_id", "id"),
)

plan_change_payments = Table(
    "plan_change_payments",
    metadata,
    # A paid upgrade's invoice, from its issue until the plan change it pays for is applied in
    # one transaction with `applied`: one a crash left `charging` (paid and never applied, or
    # never charged) is settled by billing.upgrades.repair_plan_change_payments.
    Column("invoice_id", Id, primary_key=True),
    Column("customer_kind", String(8), nullable=False),
    Column("customer_id", Id, nullable=False),
    Column("tier", String(32), nullable=False),
    # charging, applied, refunded (paid, the change not applied) or void (never paid).
    Column("status", String(16), nullable=False),
    *_stamps(),
    # Where the fee period of the plan it pays for ends (NULL: made before it was recorded).
    Column("fee_until", Timestamp),
    Index("ix_plan_change_payments_status", "status", "created_at"),
)

monthly_grants = Table(
    "monthly_grants",
    metadata,
    # What one billing period of a customer granted to its monthly bucket (initial grant, plan
    # changes, refresh): never more than the largest grant of a plan held in that period.
    Column("customer_id", Id, primary_key=True),
    Column("period_start", Timestamp, primary_key=True),
    Column("granted_micros", BigInteger, nullable=False),
    Column("largest_grant_micros", BigInteger, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    CheckConstraint(
        "granted_micros >= 0 AND granted_micros <= largest_grant_micros",
        name="ck_monthly_grants_bounded",
    ),
)

api_calls = Table(
    "api_calls",
    metadata,
    # The reporter's id for the call: the idempotency key.
    Column("id", Id, primary_key=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("org_id", Id),
    Column("customer_id", Id, nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("method", String(16), nullable=False),
    Column("status_code", Integer),
    Column("started_at", Timestamp, nullable=False),
    Column("completed_at", Timestamp, nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("price_micros", BigInteger, nullable=False),
    Column("ip_address", String(64), nullable=False, default=""),
    Column("user_agent", String(512), nullable=False, default=""),
    Column("origin", String(512)),
    Column("token", Id, nullable=False),
    # SHA-256 of the reported content: the same id with other content is a conflict.
    Column("content_hash", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_api_calls_user", "user_id", "created_at", "id"),
    Index("ix_api_calls_org", "org_id", "created_at", "id"),
    Index("ix_api_calls_created", "created_at", "id"),
)

enterprise_prices = Table(
    "enterprise_prices",
    metadata,
    Column("org_id", Id, ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    Column("price_type", String(16), nullable=False),
    Column("interval", String(8), nullable=False),
    Column("price_micros", BigInteger, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# The console's single-use sign-in links and its sessions; only SHA-256 hashes of their secrets.
console_links = Table(
    "console_links",
    metadata,
    Column("id", Id, primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # Signed in with an API token: the session lasts only while that token is valid.
    Column("token_id", Id, ForeignKey("api_tokens.id", ondelete="CASCADE")),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp),
)

# Invoicing (issue 9). Amounts are micro-dollars; what is charged is whole cents (`total_micros`
# is always a multiple of 10,000: see zoopay.invoicing.service on rounding).
invoices = Table(
    "invoices",
    metadata,
    Column("id", Id, primary_key=True),
    Column("customer_kind", String(8), nullable=False),
    Column("customer_id", Id, nullable=False),
    # Given when the invoice is finalized, from invoice_counters: no gaps, never reused.
    Column("number", String(32), unique=True),
    # draft, open, paid, void or uncollectible.
    Column("status", String(16), nullable=False),
    Column("description", String(500), nullable=False),
    Column("customer_email", String(320)),
    Column("customer_name", String(200)),
    Column("country", String(2)),
    # The tax rate applied, as an exact decimal string ("0.19"); "0" when none.
    Column("tax_rate", String(16), nullable=False),
    Column("subtotal_micros", BigInteger, nullable=False),
    Column("tax_micros", BigInteger, nullable=False),
    Column("total_micros", BigInteger, nullable=False),
    Column("amount_paid_micros", BigInteger, nullable=False, default=0),
    Column("amount_refunded_micros", BigInteger, nullable=False, default=0),
    Column("attempt_count", Integer, nullable=False, default=0),
    # The processor's charge that paid it.
    Column("charge_id", String(255)),
    Column("created_at", Timestamp, nullable=False),
    Column("finalized_at", Timestamp),
    Column("paid_at", Timestamp),
    Column("closed_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
    CheckConstraint(
        "amount_refunded_micros >= 0 AND amount_refunded_micros <= amount_paid_micros",
        name="ck_invoices_refund_bounded",
    ),
    Index("ix_invoices_customer", "customer_id", "created_at", "id"),
    Index("ix_invoices_status", "status", "created_at"),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("id", Id, primary_key=True),
    Column("invoice_id", Id, ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    # plan_fee, usage, credits or rounding: what paying it does (zoopay.invoicing.service).
    Column("kind", String(16), nullable=False),
    Column("description", String(500), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    # What the line is for, e.g. a subscription id and period, or a reference of the caller's.
    Column("reference", String(128)),
    Index("ix_invoice_lines_invoice", "invoice_id", "position"),
)

invoice_counters = Table(
    "invoice_counters",
    metadata,
    # One row per number prefix, locked by the transaction that finalizes an invoice: a rolled
    # back finalization gives its number back.
    Column("prefix", String(16), primary_key=True),
    Column("next_value", BigInteger, nullable=False),
)

invoice_payment_attempts = Table(
    "invoice_payment_attempts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("invoice_id", Id, ForeignKey("invoices.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    # invoice-{invoice id}-attempt-{attempt}: sent with the charge; reconcile asks by it.
    Column("idempotency_key", String(128), nullable=False, unique=True),
    # pending (committed before the processor is called), succeeded, failed, requires_action,
    # abandoned (the processor never saw it).
    Column("status", String(16), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("processor_customer_id", String(255), nullable=False),
    Column("payment_method_id", String(255)),
    Column("charge_id", String(255)),
    Column("failure_code", String(64)),
    Column("failure_message", String(500)),
    *_stamps(),
    Index("ix_invoice_payment_attempts_status", "status", "created_at"),
    Index("ux_invoice_payment_attempts_attempt", "invoice_id", "attempt", unique=True),
)

invoice_refunds = Table(
    "invoice_refunds",
    metadata,
    Column("id", Id, primary_key=True),
    Column("invoice_id", Id, ForeignKey("invoices.id"), nullable=False),
    # The staff's key (or one derived for them): the same key refunds once.
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("amount_cents", BigInteger, nullable=False),
    # The part of it that takes bought credits back out of the stable bucket.
    Column("credits_micros", BigInteger, nullable=False),
    # pending (committed before the processor is called), succeeded or failed.
    Column("status", String(16), nullable=False),
    Column("processor_refund_id", String(255)),
    Column("actor", String(64), nullable=False),
    *_stamps(),
    Index("ix_invoice_refunds_invoice", "invoice_id", "created_at"),
)

server_secrets = Table(
    "server_secrets",
    metadata,
    # Made on first use and shared by every process through the database, e.g. the key that
    # signs invoice links.
    Column("name", String(32), primary_key=True),
    Column("value", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

# The money journal: double entry. Every posting's lines sum to zero; an account's balance is
# the sum of its lines (debits positive, credits negative).
journal_accounts = Table(
    "journal_accounts",
    metadata,
    # kind, or kind:customer_id for a customer's account, e.g. receivable:<uuid>.
    Column("id", String(64), primary_key=True),
    Column("kind", String(24), nullable=False),
    Column("customer_id", Id),
    Column("balance_micros", BigInteger, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

journal_postings = Table(
    "journal_postings",
    metadata,
    _serial(),
    # invoice_issued, charge, credit_purchase, refund, write_off, write_off_reversed, void
    Column("kind", String(24), nullable=False),
    Column("invoice_id", Id),
    # The processor's charge or refund id.
    Column("processor_ref", String(255)),
    Column("memo", String(500), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_journal_postings_invoice", "invoice_id", "id"),
)

journal_lines = Table(
    "journal_lines",
    metadata,
    _serial(),
    Column("posting_id", BigInteger, ForeignKey("journal_postings.id"), nullable=False),
    Column("account_id", String(64), ForeignKey("journal_accounts.id"), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Index("ix_journal_lines_account", "account_id"),
    Index("ix_journal_lines_posting", "posting_id"),
)

# --- Payments: zoopay's side of money movement (billing information, usage thresholds).

payment_customers = Table(
    "payment_customers",
    metadata,
    # A user or org (ledger Customer) and who holds its cards: one processor customer, made on
    # first need and kept (deleting billing information keeps the mapping, so cards and charges
    # stay reconcilable).
    Column("customer_id", Id, primary_key=True),
    Column("customer_kind", String(8), nullable=False),
    Column("processor", String(16), nullable=False),
    Column("processor_customer_id", String(64), nullable=False),
    # Billing information (Zoo's BillingInfo), present while `billing_info_at` is set.
    Column("name", String(200)),
    Column("phone", String(64), nullable=False, default=""),
    Column("address_country", String(2)),
    Column("address_state", String(200)),
    Column("address_city", String(200)),
    Column("address_street1", String(200)),
    Column("address_street2", String(200)),
    Column("address_zip", String(32)),
    # An EU VAT id (extension: PUT /user/payment/tax-id), shown in Customer.metadata.
    Column("vat_id", String(32)),
    Column("billing_info_at", Timestamp),
    # Set by dunning: the customer's last charge failed and money is overdue.
    Column("delinquent", Boolean, nullable=False, default=False),
    *_stamps(),
    Index("ux_payment_customers_processor", "processor", "processor_customer_id", unique=True),
)

usage_thresholds = Table(
    "usage_thresholds",
    metadata,
    # The unpaid usage at which billing issues an early invoice (Zoo's aggregate-usage
    # collection threshold): the customer's own choice and staff's override; neither means the
    # default.
    Column("customer_id", Id, primary_key=True),
    Column("customer_kind", String(8), nullable=False),
    Column("customer_amount_micros", BigInteger),
    Column("admin_amount_micros", BigInteger),
    # Optimistic concurrency: every change increments it; a PUT names the one it read.
    Column("version", Integer, nullable=False, default=0),
    Column("updated_at", Timestamp, nullable=False),
)

# --- The embedded processor's own tables (a stand-in for Stripe inside zoopay). zoopay's
# domains never read them: they go through zoopay.processors' PaymentProcessor protocol.

processor_customers = Table(
    "processor_customers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("name", String(200)),
    # JSON object of strings.
    Column("metadata", String(4000), nullable=False, default="{}"),
    Column("default_payment_method_id", String(64)),
    *_stamps(),
)

processor_payment_methods = Table(
    "processor_payment_methods",
    metadata,
    Column("id", String(64), primary_key=True),
    _processor_customer(),
    # The test token it was made from (pm_card_visa, ...): it decides how charges behave.
    Column("token", String(64), nullable=False),
    Column("brand", String(32), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("country", String(2)),
    Column("funding", String(16)),
    Column("fingerprint", String(32), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # Detached methods stay, for the charges that name them.
    Column("detached_at", Timestamp),
    Index("ix_processor_payment_methods_customer", "customer_id", "created_at"),
)

processor_setup_intents = Table(
    "processor_setup_intents",
    metadata,
    Column("id", String(64), primary_key=True),
    _processor_customer(),
    # SHA-256 of the client secret: the secret itself is shown once.
    Column("secret_hash", String(64), nullable=False, unique=True),
    # requires_payment_method, then succeeded (single use).
    Column("status", String(32), nullable=False),
    Column("payment_method_id", String(64)),
    Column("created_at", Timestamp, nullable=False),
    Column("confirmed_at", Timestamp),
)

processor_charges = Table(
    "processor_charges",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    _processor_customer(),
    Column("payment_method_id", String(64)),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", String(1000), nullable=False, default=""),
    Column("status", String(32), nullable=False),
    Column("failure_code", String(64)),
    Column("failure_message", String(500)),
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("amount_cents > 0", name="ck_processor_charges_positive"),
)

processor_refunds = Table(
    "processor_refunds",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("charge_id", String(64), ForeignKey("processor_charges.id"), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("amount_cents > 0", name="ck_processor_refunds_positive"),
    Index("ix_processor_refunds_charge", "charge_id"),
)

# --- Stripe webhooks: each event Stripe delivers, recorded once (its id is the key), so that a
# delivery repeated by Stripe is acknowledged and never applied twice.

stripe_events = Table(
    "stripe_events",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("type", String(100), nullable=False),
    # The payment intent or charge it is about, for an operator's search.
    Column("object_id", String(255)),
    # applied: it changed an invoice; recorded: nothing of zoopay's was waiting for it.
    Column("outcome", String(16), nullable=False),
    Column("received_at", Timestamp, nullable=False),
)

__all__ = [
    "api_calls",
    "api_tokens",
    "balances",
    "billing_closes",
    "billing_credits",
    "console_links",
    "console_sessions",
    "downgrade_credits",
    "enterprise_prices",
    "held_credits",
    "invoice_counters",
    "invoice_lines",
    "invoice_payment_attempts",
    "invoice_refunds",
    "invoices",
    "journal_accounts",
    "journal_lines",
    "journal_postings",
    "ledger_entries",
    "metadata",
    "monthly_grants",
    "org_invitations",
    "org_members",
    "orgs",
    "payment_customers",
    "plan_change_payments",
    "processor_charges",
    "processor_customers",
    "processor_payment_methods",
    "processor_refunds",
    "processor_setup_intents",
    "server_secrets",
    "stripe_events",
    "subscriptions",
    "usage_thresholds",
    "users",
]
