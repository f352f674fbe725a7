"""A processor in this process's memory, for the invoicing tests until the embedded processor
lands (it follows the contract in zoopay.processors.base: idempotent charges and refunds,
declines as FAILED charges, `no_payment_method`)."""

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from zoopay.processors.base import (
    Card,
    Charge,
    ChargeStatus,
    ProcessorError,
    Refund,
    SetupIntent,
)

_ids = itertools.count(1)


@dataclass
class MemoryProcessor:
    name: str = "memory"
    # customer id -> what the next charges do: "succeed", "decline", "authenticate", "none"
    behaviour: dict[str, str] = field(default_factory=dict)
    charges: dict[str, Charge] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def create_customer(
        self, *, email: str, name: str | None, metadata: dict[str, str]
    ) -> str:
        return f"cus_{next(_ids)}"

    async def update_customer(self, customer_id: str, *, email: str, name: str | None) -> None:
        return None

    async def create_setup_intent(self, customer_id: str) -> SetupIntent:
        return SetupIntent(f"seti_{next(_ids)}", "secret")

    async def list_payment_methods(self, customer_id: str) -> list[Card]:
        return [
            Card("pm_1", "visa", "4242", 12, 2030, "US", "credit", "fp", datetime.now(UTC), True)
        ]

    async def default_payment_method(self, customer_id: str) -> str | None:
        return None if self.behaviour.get(customer_id) == "none" else "pm_1"

    async def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        return None

    async def detach_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        return None

    async def charge(
        self,
        customer_id: str,
        *,
        amount_cents: int,
        currency: str,
        idempotency_key: str,
        description: str,
        payment_method_id: str | None = None,
    ) -> Charge:
        self.calls.append(idempotency_key)
        if idempotency_key in self.charges:
            return self.charges[idempotency_key]
        behaviour = self.behaviour.get(customer_id, "succeed")
        if behaviour == "none":
            raise ProcessorError("no_payment_method", "the customer has no payment method")
        status = {
            "succeed": ChargeStatus.SUCCEEDED,
            "decline": ChargeStatus.FAILED,
            "authenticate": ChargeStatus.REQUIRES_ACTION,
        }[behaviour]
        failed = status == ChargeStatus.FAILED
        charge = Charge(
            id=f"ch_{next(_ids)}",
            idempotency_key=idempotency_key,
            status=status,
            amount_cents=amount_cents,
            currency=currency,
            payment_method_id="pm_1",
            failure_code="card_declined" if failed else None,
            failure_message="Your card was declined." if failed else None,
        )
        self.charges[idempotency_key] = charge
        return charge

    async def find_charge(self, idempotency_key: str) -> Charge | None:
        return self.charges.get(idempotency_key)

    async def refund(self, charge_id: str, *, amount_cents: int, idempotency_key: str) -> Refund:
        if idempotency_key not in self.refunds:
            self.refunds[idempotency_key] = Refund(
                f"re_{next(_ids)}", charge_id, idempotency_key, amount_cents, "succeeded"
            )
        return self.refunds[idempotency_key]

    async def portal_url(self, customer_id: str, *, return_url: str) -> str:
        return return_url

    def succeeded_cents(self) -> int:
        return sum(
            c.amount_cents for c in self.charges.values() if c.status == ChargeStatus.SUCCEEDED
        )
