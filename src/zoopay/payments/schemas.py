"""Wire models of payments: field for field those of kittycad 1.2.0 (and, for the threshold and
the payment-method page, which 1.2.0 lacks, 1.8.0), plus the extensions' own."""

import enum
from datetime import datetime
from typing import Annotated, Self

from pydantic import Field, StrictInt

from zoopay.money import Amount, Money, from_micros
from zoopay.payments.service import Address, BillingDetails, PaymentCustomer
from zoopay.payments.tax import COUNTRY_CODES
from zoopay.payments.thresholds import ADMIN_BOUNDS, CUSTOMER_BOUNDS, DEFAULT_MICROS, Bounds
from zoopay.payments.thresholds import UsageThreshold as UsageThresholdRecord
from zoopay.processors.base import Card
from zoopay.records import same_named
from zoopay.wire import StoredWireModel, WireModel

CountryCode = enum.StrEnum(  # type: ignore[misc]
    "CountryCode", {code: code for code in sorted(COUNTRY_CODES)}
)

Line = Annotated[str, Field(max_length=200)]


class AddressDetails(StoredWireModel):
    """Address details."""

    city: Line | None = None
    country: CountryCode
    state: Line | None = None
    street1: Line | None = None
    street2: Line | None = None
    zip: Annotated[str, Field(max_length=32)] | None = None

    def address(self) -> Address:
        return Address(
            country=str(self.country),
            state=self.state,
            city=self.city,
            street1=self.street1,
            street2=self.street2,
            zip=self.zip,
        )

    @classmethod
    def of(cls, address: Address) -> Self:
        return cls(**same_named(address, cls))


class BillingInfo(StoredWireModel):
    """The billing information for payments."""

    address: AddressDetails | None = None
    name: Line | None = None
    # 1.8.0 may send null: the same as empty.
    phone: Annotated[str, Field(max_length=64)] | None = ""

    def details(self) -> BillingDetails:
        return BillingDetails(
            name=self.name,
            phone=self.phone or "",
            address=self.address.address() if self.address else None,
        )


class Customer(WireModel):
    """The resource representing a payment "Customer"."""

    address: AddressDetails | None = None
    # What the customer owes now (total_due), in USD.
    balance: Money
    created_at: datetime
    currency: str
    delinquent: bool
    email: str | None = None
    id: str | None = None
    metadata: dict[str, str]
    name: str | None = None
    phone: str

    @classmethod
    def of(cls, record: PaymentCustomer, *, email: str, total_due_micros: int) -> Self:
        details = record.details
        return cls(
            address=AddressDetails.of(details.address) if details.address else None,
            balance=from_micros(total_due_micros),
            created_at=record.created_at,
            currency="usd",
            delinquent=record.delinquent,
            email=email,
            id=record.processor_customer_id,
            metadata={"vat_id": record.vat_id} if record.vat_id else {},
            name=details.name,
            phone=details.phone,
        )


class PaymentIntent(WireModel):
    """A payment intent response."""

    client_secret: str


class PaymentMethodCardChecks(WireModel):
    """Card checks."""

    address_line1_check: str | None = None
    address_postal_code_check: str | None = None
    cvc_check: str | None = None


class CardDetails(WireModel):
    """The card details of a payment method."""

    brand: str | None = None
    checks: PaymentMethodCardChecks
    country: str | None = None
    exp_month: int
    exp_year: int
    fingerprint: str | None = None
    funding: str | None = None
    last4: str | None = None


class PaymentMethodType(enum.StrEnum):
    CARD = "card"


class PaymentMethod(WireModel):
    """A payment method."""

    billing_info: BillingInfo
    card: CardDetails | None = None
    created_at: datetime
    id: str | None = None
    metadata: dict[str, str]
    type: PaymentMethodType

    @classmethod
    def of(cls, card: Card) -> Self:
        return cls(
            **same_named(card, cls),
            billing_info=BillingInfo(address=None, name=None, phone=""),
            card=CardDetails(**same_named(card, CardDetails), checks=PaymentMethodCardChecks()),
            metadata={},
            type=PaymentMethodType.CARD,
        )


class PaymentMethodResultsPage(WireModel):
    """A single page of results (kittycad 1.8.0)."""

    items: list[PaymentMethod]
    next_page: str | None = None


class AggregateUsageCollectionThresholdBounds(WireModel):
    """Inclusive amount bounds for a threshold authority."""

    maximum_amount: Money
    minimum_amount: Money

    @classmethod
    def of(cls, bounds: Bounds) -> Self:
        return cls(
            maximum_amount=from_micros(bounds.maximum_micros),
            minimum_amount=from_micros(bounds.minimum_micros),
        )


class AggregateUsageCollectionThresholdSource(enum.StrEnum):
    ADMIN = "admin"
    CUSTOMER = "customer"
    SYSTEM_DEFAULT = "system_default"


class AggregateUsageCollectionThresholdView(WireModel):
    """Configured and effective aggregate-usage collection-threshold state."""

    admin_amount: Money | None = None
    admin_bounds: AggregateUsageCollectionThresholdBounds
    customer_amount: Money | None = None
    customer_bounds: AggregateUsageCollectionThresholdBounds
    default_amount: Money
    effective_amount: Money
    source: AggregateUsageCollectionThresholdSource
    version: int

    @classmethod
    def of(cls, record: UsageThresholdRecord) -> Self:
        admin, own = record.admin_amount_micros, record.customer_amount_micros
        return cls(
            admin_amount=from_micros(admin) if admin is not None else None,
            admin_bounds=AggregateUsageCollectionThresholdBounds.of(ADMIN_BOUNDS),
            customer_amount=from_micros(own) if own is not None else None,
            customer_bounds=AggregateUsageCollectionThresholdBounds.of(CUSTOMER_BOUNDS),
            default_amount=from_micros(DEFAULT_MICROS),
            effective_amount=from_micros(record.effective_micros),
            source=AggregateUsageCollectionThresholdSource(record.source.value),
            version=record.version,
        )


MAX_VERSION = 2**31 - 1
Version = Annotated[StrictInt, Field(ge=0, le=MAX_VERSION)]


class AggregateUsageCollectionThresholdSet(WireModel):
    """An explicit collection-threshold value to configure for an account."""

    amount: Amount
    expected_version: Version


# -- extensions


class ConfirmSetupIntent(WireModel):
    """Stripe.js's part, for the embedded processor: confirm a setup intent with a test card."""

    client_secret: Annotated[str, Field(min_length=1, max_length=200)]
    payment_method: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="A Stripe test token: pm_card_visa, pm_card_mastercard, ...",
        ),
    ]


class TaxId(StoredWireModel):
    """The customer's EU VAT id (null: none), validated by its checksum."""

    vat_id: Annotated[str, Field(min_length=1, max_length=32)] | None
