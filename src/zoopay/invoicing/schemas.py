"""Wire models of invoices: `Invoice` and `InvoiceLineItem` field for field kittycad 1.2.0's
(which forbids unknown fields); `InvoiceDetail`, the same with the refund fields kittycad 1.8.0
added (`amount_refunded`, `refund_status`, `can_retry_payment`), in results pages and in the
extension endpoints."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from zoopay.invoicing.service import CHARGEABLE, InvoiceLine, InvoiceStatus, RefundStatus
from zoopay.invoicing.service import Invoice as InvoiceRecord
from zoopay.money import Amount, Money, format_micros, from_micros, parse_dollars
from zoopay.wire import WireModel


class InvoiceLineItem(WireModel):
    amount: Money
    currency: str = "usd"
    description: str | None = None
    id: str | None = None
    invoice_item: str | None = None
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="`kind`: plan_fee, usage, credits or rounding; `reference` when it has one",
    )

    @classmethod
    def of(cls, line: InvoiceLine) -> "InvoiceLineItem":
        metadata = {"kind": line.kind.value}
        if line.reference:
            metadata["reference"] = line.reference
        return cls(
            amount=from_micros(line.amount_micros),
            description=line.description,
            id=line.id,
            metadata=metadata,
        )


class Coupon(WireModel):
    amount_off: Money | None = None
    deleted: bool = False
    id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    name: str | None = None
    percent_off: float | None = None


class Discount(WireModel):
    """zoopay grants no discounts: `discounts` is always null."""

    coupon: Coupon


class Invoice(WireModel):
    """An invoice. `pdf` and `url` are signed links that work in a browser for 7 days."""

    amount_due: Money
    amount_paid: Money
    amount_remaining: Money
    attempt_count: int
    attempted: bool
    created_at: datetime
    currency: str = "usd"
    customer_email: str | None = None
    customer_id: str | None = None
    default_payment_method: str | None = None
    description: str | None = None
    discounts: list[Discount] | None = None
    id: str | None = None
    lines: list[InvoiceLineItem] | None = None
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="`amount_refunded` and `refund_status` (when refunded), `tax_rate` and"
        " `tax_country` (when taxed)",
    )
    number: str | None = None
    paid: bool
    pdf: str | None = None
    receipt_number: str | None = None
    statement_descriptor: str | None = None
    status: InvoiceStatus | None = None
    subtotal: Money
    tax: Money
    total: Money
    url: str | None = None

    @classmethod
    def fields_of(cls, invoice: InvoiceRecord, pdf: str, url: str) -> dict[str, object]:
        metadata: dict[str, str] = {}
        if invoice.refund_status is not None:
            metadata["amount_refunded"] = format_micros(invoice.amount_refunded_micros)
            metadata["refund_status"] = invoice.refund_status.value
        if invoice.tax_rate:
            metadata["tax_rate"] = str(invoice.tax_rate)
            metadata["tax_country"] = invoice.country or ""
        return {
            "amount_due": from_micros(invoice.amount_due_micros),
            "amount_paid": from_micros(invoice.amount_paid_micros),
            "amount_remaining": from_micros(invoice.amount_remaining_micros),
            "attempt_count": invoice.attempt_count,
            "attempted": invoice.attempt_count > 0,
            "created_at": invoice.created_at,
            "customer_email": invoice.customer_email,
            "customer_id": invoice.customer.id,
            "description": invoice.description,
            "id": invoice.id,
            "lines": [InvoiceLineItem.of(line) for line in invoice.lines],
            "metadata": metadata,
            "number": invoice.number,
            "paid": invoice.paid,
            "pdf": pdf,
            "receipt_number": invoice.number if invoice.paid else None,
            "statement_descriptor": None,
            "status": invoice.status,
            "subtotal": from_micros(invoice.subtotal_micros),
            "tax": from_micros(invoice.tax_micros),
            "total": from_micros(invoice.total_micros),
            "url": url,
        }

    @classmethod
    def of(cls, invoice: InvoiceRecord, *, pdf: str, url: str) -> "Invoice":
        return cls.model_validate(cls.fields_of(invoice, pdf, url))


class InvoiceDetail(Invoice):
    """An invoice with its refunds (kittycad 1.8.0's fields)."""

    amount_refunded: Money
    refund_status: RefundStatus | None = None
    can_retry_payment: bool = Field(
        description="Open or uncollectible with something left to pay: POST"
        " .../invoices/{id}/pay charges it now"
    )

    @classmethod
    def of(cls, invoice: InvoiceRecord, *, pdf: str, url: str) -> "InvoiceDetail":
        return cls.model_validate(
            {
                **cls.fields_of(invoice, pdf, url),
                "amount_refunded": from_micros(invoice.amount_refunded_micros),
                "refund_status": invoice.refund_status,
                "can_retry_payment": invoice.status in CHARGEABLE
                and invoice.total_micros > invoice.amount_paid_micros,
            }
        )


class InvoiceResultsPage(BaseModel):
    items: list[InvoiceDetail]
    next_page: str | None = None


# What POST .../payment/credits accepts, said in the document (the route refuses the rest).
_CREDIT_AMOUNT = {
    "anyOf": [
        {"type": "number", "minimum": 1, "maximum": 100000, "multipleOf": 0.01},
        {"type": "string", "pattern": r"^0*([1-9][0-9]{0,4}(\.[0-9]{1,2}0*)?|100000(\.0+)?)$"},
    ],
    "description": "USD in whole cents, from 1.00 to 100000.00: a JSON number or decimal string",
}
CreditAmount = Annotated[
    Decimal,
    BeforeValidator(parse_dollars),
    WithJsonSchema(_CREDIT_AMOUNT, mode="validation"),
]


class BuyCredits(WireModel):
    """Stable API credits to buy: invoiced and charged to the default payment method."""

    amount: CreditAmount


class RefundInvoice(WireModel):
    """A refund of a paid invoice (staff)."""

    amount: Amount = Field(description="USD, whole cents, at most what is left to refund")
    idempotency_key: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The same key refunds once: send it again to retry safely",
    )


Kind = Literal["pdf", "html"]
