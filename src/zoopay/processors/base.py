"""The boundary between zoopay and whoever holds cards and moves money.

zoopay owns plans, invoices and the ledgers; a processor holds customers, payment methods,
setup intents, charges (payment intents) and refunds. Every call is the processor's own
transaction: once it answers, what it did stands whatever zoopay's database does next, as
with an outside service. That is why every charge and refund carries an idempotency key that
zoopay derives from what it pays for, and why `find_charge` exists: a crash between the
processor's answer and zoopay's commit is repaired by asking again, never by charging again.

Amounts cross this boundary in whole cents (as Stripe takes them); zoopay rounds an invoice
to cents before it charges it.
"""

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar


class ChargeStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    # Refused by the card's issuer: the invoice stays open and dunning retries it.
    FAILED = "failed"
    # The customer must act (3-D Secure): nothing was taken yet. It may still succeed later,
    # when the customer completes it (Stripe then sends `payment_intent.succeeded`), until it is
    # canceled.
    REQUIRES_ACTION = "requires_action"
    # A charge that waited for the customer and was canceled: nothing was taken, nothing will be.
    CANCELED = "canceled"


@dataclass(frozen=True)
class SetupIntent:
    id: str
    client_secret: str


@dataclass(frozen=True)
class Card:
    """A payment method as zoopay shows it (PaymentMethod in Zoo's API)."""

    id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    country: str | None
    funding: str | None
    fingerprint: str | None
    created_at: datetime
    is_default: bool


@dataclass(frozen=True)
class Charge:
    id: str
    idempotency_key: str
    status: ChargeStatus
    amount_cents: int
    currency: str
    payment_method_id: str | None
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class Refund:
    id: str
    charge_id: str
    idempotency_key: str
    amount_cents: int
    status: str


class ProcessorError(Exception):
    """The processor refused a request for a reason a person can act on (a declined card on
    attach, an unknown payment method). Carries the processor's code, e.g. `card_declined`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ProcessorUnavailable(Exception):
    """The processor did not answer: whether it acted is unknown until asked again."""


@dataclass(frozen=True)
class ChargeRequest:
    """What `PaymentProcessor.charge` is asked, alone or in a batch (`charge_many`); no
    `payment_method_id` charges the customer's default."""

    customer_id: str
    amount_cents: int
    currency: str
    idempotency_key: str
    description: str
    payment_method_id: str | None = None


@dataclass(frozen=True)
class CustomerRequest:
    """One customer of a batch (`PaymentProcessor.create_customers`): `create_customer`'s
    arguments."""

    email: str
    name: str | None
    metadata: dict[str, str]


def check_same_charge(
    request: ChargeRequest, *, customer_id: object, amount_cents: object, currency: object
) -> None:
    """ProcessorError(`idempotency_key_in_use`) unless a charge found under the request's
    idempotency key (its customer, amount and currency as the processor holds them) is the
    charge the request asked for. zoopay settles an invoice on an attempt's charge by its key
    and amount alone, so another customer's money, another currency or another amount would
    pay it: every path that takes a charge found for an attempt as its own (a retried `charge`
    or `charge_many`, `find_charge` for reconcile and `billing run`, `cancel_charge`, Stripe's
    webhook) asks here, and only here. Compared as sent: a fraction of a cent is no charge of
    whole cents."""
    if (customer_id, amount_cents, currency) != (
        request.customer_id,
        request.amount_cents,
        request.currency,
    ):
        raise ProcessorError(
            "idempotency_key_in_use", "this idempotency key was used for another charge"
        )


# What one customer of a batch came to: the new customer's id, a refusal, or no answer.
CustomerResult = str | ProcessorError | ProcessorUnavailable

# What one request of a batch came to: the charge (succeeded, failed or requiring action), a
# refusal (`charge` would raise it: no payment method, ...), or no answer (asked again later).
ChargeResult = Charge | ProcessorError | ProcessorUnavailable


class PaymentProcessor(Protocol):
    name: str

    async def create_customer(
        self, *, email: str, name: str | None, metadata: dict[str, str]
    ) -> str:
        """A new processor customer; answers its id."""
        ...

    async def create_customers(self, requests: Sequence[CustomerRequest]) -> list[CustomerResult]:
        """`create_customer` for each request, answered in their order; a request's refusal or
        lost answer is its result, never an exception that loses the others' ids."""
        ...

    async def update_customer(self, customer_id: str, *, email: str, name: str | None) -> None: ...

    async def create_setup_intent(self, customer_id: str) -> SetupIntent: ...

    async def list_payment_methods(self, customer_id: str) -> list[Card]:
        """The customer's cards, the default first, then newest first."""
        ...

    async def default_payment_method(self, customer_id: str) -> str | None: ...

    async def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        """ProcessorError(`resource_missing`) if the method is not this customer's."""
        ...

    async def detach_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        """ProcessorError(`resource_missing`) if the method is not this customer's."""
        ...

    async def charge(self, request: ChargeRequest) -> Charge:
        """Charge the request's method, or the customer's default. A decline is a Charge with
        status FAILED, not an exception. The same idempotency key answers the same Charge and
        takes nothing more. ProcessorError(`no_payment_method`) when there is none."""
        ...

    async def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeResult]:
        """`charge` for each request, answered in their order; a request's refusal or lost
        answer is its result, never an exception that loses the others' answers. The same
        idempotency keys answer the same Charges, as `charge` does."""
        ...

    async def find_charge(self, request: ChargeRequest) -> Charge | None:
        """The charge made with the request's idempotency key, if any: how reconciliation learns
        what happened to an attempt. A charge under the key that is not the one the request
        asks for is ProcessorError(`idempotency_key_in_use`) (`check_same_charge`), as `charge`
        answers such a retry: it is never answered as the request's charge."""
        ...

    async def cancel_charge(self, charge_id: str, *, request: ChargeRequest) -> Charge:
        """Cancel a charge that waits for the customer (REQUIRES_ACTION), so that it can never
        succeed later; answers the charge as it then stands: CANCELED, or what the customer made
        of it first (SUCCEEDED, FAILED: nothing is canceled then). A charge that is no longer
        waiting is answered as it is. ProcessorError(`resource_missing`) for an unknown one;
        ProcessorError(`idempotency_key_in_use`), nothing canceled, for one that is not what
        `request` asked for (`check_same_charge`)."""
        ...

    async def refund(self, charge_id: str, *, amount_cents: int, idempotency_key: str) -> Refund:
        """Refund part or all of a succeeded charge; the same key answers the same Refund."""
        ...

    async def portal_url(self, customer_id: str, *, return_url: str) -> str | None:
        """Where the customer manages their cards: a page of the processor's (Stripe's
        customer portal), or None when it has none and zoopay's console is that page."""
        ...


Request = TypeVar("Request")
Answer = TypeVar("Answer")


async def each_call(
    call: Callable[[Request], Awaitable[Answer]], requests: Sequence[Request], *, concurrency: int
) -> list[Answer | ProcessorError | ProcessorUnavailable]:
    """A batch as one call per request, at most `concurrency` in flight (a processor whose
    calls are requests over the network), answered in their order; a refusal or a lost answer
    is that request's result."""
    bound = asyncio.Semaphore(max(1, concurrency))

    async def one(request: Request) -> Answer | ProcessorError | ProcessorUnavailable:
        async with bound:
            try:
                return await call(request)
            except (ProcessorError, ProcessorUnavailable) as exc:
                return exc

    return list(await asyncio.gather(*(one(request) for request in requests)))
