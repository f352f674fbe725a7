"""Charges that need the customer on Stripe (a PaymentIntent in `requires_action`), against
localstripe: the customer authenticates the intent later (what Stripe.js shows them; localstripe's
`_authenticate` stands for it), Stripe tells zoopay with `payment_intent.succeeded`, and the
invoice is paid exactly once, whatever zoopay tried meanwhile.

The same rules on the embedded processor: tests/invoicing/test_requires_action.py.
"""

from typing import Any

import httpx

from tests.processors.conftest import Stripe
from tests.support.billing import books_are_clean
from tests.support.localstripe import API_KEY
from tests.support.processor import (
    DOLLARS_25,
    Waiting,
    invoice_state,
    open_credits_invoice,
    pay_again,
    stable_micros,
)
from tests.support.stripe_events import (
    WEBHOOK,
    delivery,
    event,
    intent_as_stripe_sends_it,
    stripe_customer_with_card,
)
from zoopay.db.engine import reading, transaction
from zoopay.invoicing.service import (
    AttemptStatus,
    InvoiceStatus,
    void_invoice,
)
from zoopay.journal.service import Account, AccountKind, account_balance
from zoopay.processors.stripe import KEY_METADATA, StripeProcessor

AUTHENTICATION_REQUIRED = "4000002760003184"
VISA = "4242424242424242"


async def waiting_invoice(stripe: Stripe) -> Waiting:
    """An open invoice whose first charge is a PaymentIntent waiting for the customer."""
    engine, processor, clock = stripe.engine, stripe.processor, stripe.clock
    person = await stripe.world.user()
    stripe_customer = await stripe_customer_with_card(processor, AUTHENTICATION_REQUIRED)
    invoice_id = await open_credits_invoice(engine, clock.now, person.user.customer)
    waiting = Waiting(person.user.customer, stripe_customer, invoice_id, "")
    outcome = await pay_again(engine, processor, clock.now, waiting)
    assert outcome.attempt is not None and outcome.attempt.charge_id is not None
    assert outcome.attempt.status == AttemptStatus.REQUIRES_ACTION
    assert outcome.invoice.status == InvoiceStatus.OPEN
    intent = await intent_as_stripe_sends_it(processor, outcome.attempt.charge_id)
    assert intent["status"] == "requires_action"
    return Waiting(person.user.customer, stripe_customer, invoice_id, intent["id"])


async def authenticate(base_url: str, processor: StripeProcessor, intent_id: str) -> int:
    """The customer completes 3-D Secure (localstripe's stand-in for Stripe.js): its status."""
    intent = await intent_as_stripe_sends_it(processor, intent_id)
    async with httpx.AsyncClient(base_url=base_url) as http:
        answer = await http.post(
            f"/v1/payment_intents/{intent_id}/_authenticate",
            data={"client_secret": intent["client_secret"], "success": "true"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    return answer.status_code


async def deliver(client: httpx.AsyncClient, kind: str, intent: dict[str, Any]) -> str:
    answer = await client.post(WEBHOOK, **delivery(event(kind, intent)))
    assert answer.status_code == 200, answer.text
    outcome: str = answer.json()["outcome"]
    return outcome


async def intents_of(processor: StripeProcessor, stripe_customer_id: str) -> list[tuple[str, str]]:
    """(status, zoopay key) of every PaymentIntent of the customer, by attempt."""
    page = await processor.client.v1.payment_intents.list_async({"limit": 100})
    found = [
        intent.to_dict()
        async for intent in page.auto_paging_iter()
        if intent.to_dict().get("customer") == stripe_customer_id
    ]
    # By zoopay's key (...-attempt-1, -2): `created` is whole seconds, ids are random.
    found.sort(key=lambda intent: intent["metadata"][KEY_METADATA])
    return [(intent["status"], intent["metadata"][KEY_METADATA]) for intent in found]


async def test_an_authenticated_intent_pays_once_and_a_retry_charges_nothing(
    stripe: Stripe,
) -> None:
    """Main's double charge: the customer authenticated, Stripe's webhook was ignored (the
    attempt was no longer pending), and the next retry charged the card again."""
    w = await waiting_invoice(stripe)
    assert await authenticate(stripe.base_url, stripe.processor, w.charge_id) == 200
    intent = await intent_as_stripe_sends_it(stripe.processor, w.charge_id)
    assert intent["status"] == "succeeded"

    assert await deliver(stripe.client, "payment_intent.succeeded", intent) == "applied"
    assert await invoice_state(stripe.engine, w.invoice_id) == (InvoiceStatus.PAID, ["succeeded"])
    assert await stable_micros(stripe.engine, w.customer) == DOLLARS_25
    # Delivered again (Stripe retries): recorded, nothing more.
    assert await deliver(stripe.client, "payment_intent.succeeded", intent) == "recorded"
    # A retry (dunning, pay now), now with a card that needs nothing: no new charge.
    await stripe.processor.set_default_payment_method(
        w.processor_customer_id, await _visa(stripe.processor, w.processor_customer_id)
    )
    again = await pay_again(stripe.engine, stripe.processor, stripe.clock.now, w)
    assert again.invoice.paid and again.attempt is None
    assert [
        status for status, _ in await intents_of(stripe.processor, w.processor_customer_id)
    ] == ["succeeded"]
    assert await stable_micros(stripe.engine, w.customer) == DOLLARS_25
    await books_are_clean(stripe.engine)


async def test_a_retry_cancels_the_waiting_intent_before_charging_anew(stripe: Stripe) -> None:
    w = await waiting_invoice(stripe)
    await stripe.processor.set_default_payment_method(
        w.processor_customer_id, await _visa(stripe.processor, w.processor_customer_id)
    )
    retried = await pay_again(stripe.engine, stripe.processor, stripe.clock.now, w)
    assert retried.invoice.paid and retried.invoice.attempt_count == 2
    assert await invoice_state(stripe.engine, w.invoice_id) == (
        InvoiceStatus.PAID,
        ["canceled", "succeeded"],
    )
    intents = await intents_of(stripe.processor, w.processor_customer_id)
    assert [status for status, _ in intents] == ["canceled", "succeeded"]
    # Too late to authenticate the first: Stripe refuses, and its cancel event changes nothing.
    assert await authenticate(stripe.base_url, stripe.processor, w.charge_id) == 400
    canceled = await intent_as_stripe_sends_it(stripe.processor, w.charge_id)
    assert await deliver(stripe.client, "payment_intent.canceled", canceled) == "recorded"
    assert await stable_micros(stripe.engine, w.customer) == DOLLARS_25
    await books_are_clean(stripe.engine)


async def test_a_success_for_an_invoice_voided_meanwhile_is_refunded_by_the_webhook(
    stripe: Stripe,
) -> None:
    w = await waiting_invoice(stripe)
    async with transaction(stripe.engine) as conn:
        await void_invoice(conn, invoice_id=w.invoice_id, now=stripe.clock.now)
    assert await authenticate(stripe.base_url, stripe.processor, w.charge_id) == 200
    intent = await intent_as_stripe_sends_it(stripe.processor, w.charge_id)

    assert await deliver(stripe.client, "payment_intent.succeeded", intent) == "applied"
    assert await invoice_state(stripe.engine, w.invoice_id) == (InvoiceStatus.VOID, ["refunded"])
    refunds = await stripe.processor.client.v1.refunds.list_async({"payment_intent": w.charge_id})
    assert [refund.amount for refund in refunds.data] == [2500]
    assert await deliver(stripe.client, "payment_intent.succeeded", intent) == "recorded"
    refunds = await stripe.processor.client.v1.refunds.list_async({"payment_intent": w.charge_id})
    assert len(refunds.data) == 1
    assert await stable_micros(stripe.engine, w.customer) == 0
    async with reading(stripe.engine) as conn:
        owed = await account_balance(conn, Account(AccountKind.REFUND_DUE, w.customer.id))
    assert owed == 0
    await books_are_clean(stripe.engine)


async def _visa(processor: StripeProcessor, stripe_customer_id: str) -> str:
    method = await processor.client.v1.payment_methods.create_async(
        {"type": "card", "card": {"number": VISA, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    await processor.client.v1.payment_methods.attach_async(
        method.id, {"customer": stripe_customer_id}
    )
    return method.id
