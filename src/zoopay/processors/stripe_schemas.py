"""Wire model of the Stripe webhook endpoint (an extension: Zoo's API has none)."""

from pydantic import BaseModel, Field

from zoopay.processors.stripe_webhooks import Outcome, StripeEvent


class StripeEventReceipt(BaseModel):
    """What zoopay did with an event Stripe delivered."""

    id: str = Field(description="The event's id (evt_...)")
    type: str = Field(description="The event's type, e.g. payment_intent.succeeded")
    outcome: Outcome = Field(
        description="applied (it changed an invoice), recorded (nothing was waiting for it) or"
        " duplicate (delivered before: nothing done this time)"
    )

    @classmethod
    def of(cls, event: StripeEvent, outcome: Outcome) -> "StripeEventReceipt":
        return cls(id=event.id, type=event.type, outcome=outcome)
