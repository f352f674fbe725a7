"""Wire models of ledger listings (an extension: Zoo's API has no ledger)."""

from datetime import datetime

from pydantic import BaseModel, Field

from zoopay.ledger.service import Bucket, Entry, Reason
from zoopay.money import Money, from_micros
from zoopay.records import same_named


class LedgerEntry(BaseModel):
    """One movement of one bucket of a balance, and why it happened."""

    id: int
    customer_id: str
    bucket: Bucket
    delta: Money = Field(description="Signed: negative draws from the bucket")
    balance_after: Money
    reason: Reason = Field(
        description="grant, refresh, staff_change, plan_change, api_call, credit_purchase,"
        " invoice_paid or refund"
    )
    reference: str | None = Field(
        description="The API call id (api_call), subscription id (grant, refresh, plan_change)"
        " or invoice id (credit_purchase, invoice_paid, refund)"
    )
    actor: str = Field(description="The user, service token or `system` that caused it")
    note: str | None = Field(
        default=None, description="Why, in the words of the staff member who made the change"
    )
    created_at: datetime

    @classmethod
    def of(cls, entry: Entry) -> "LedgerEntry":
        return cls(
            **same_named(entry, cls),
            delta=from_micros(entry.delta_micros),
            balance_after=from_micros(entry.balance_after_micros),
        )


class LedgerEntryResultsPage(BaseModel):
    items: list[LedgerEntry]
    next_page: str | None = None
