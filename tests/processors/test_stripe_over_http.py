"""The API with ZOOPAY_PROCESSOR=stripe, against localstripe: billing information, a card added
as Stripe.js adds it (the setup intent zoopay made, confirmed with Stripe, then announced by a
signed `setup_intent.succeeded`), credits bought and charged through Stripe, and a refund."""

from decimal import Decimal

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import World
from tests.support.stripe_events import delivery, event
from zoopay.db.engine import reading
from zoopay.ledger.service import get_balance
from zoopay.processors.stripe import KEY_METADATA, StripeProcessor

ADDRESS = {"city": "Berlin", "country": "DE", "street1": "Unter den Linden 1", "zip": "10117"}
BILLING = {"address": ADDRESS, "name": "Alice Example", "phone": "+4930123456"}


async def test_a_card_credits_and_a_refund_through_stripe(
    stripe_client: httpx.AsyncClient,
    stripe_processor: StripeProcessor,
    engine: AsyncEngine,
    world: World,
) -> None:
    alice, staff = await world.user(), await world.user(staff=True)
    created = await stripe_client.post("/user/payment", json=BILLING, headers=alice.headers)
    assert created.status_code == 201, created.text

    intent = await stripe_client.post("/user/payment/intent", headers=alice.headers)
    assert intent.status_code == 201, intent.text
    secret = intent.json()["client_secret"]
    setup_id = secret.split("_secret_")[0]
    # Stripe.js's part: confirm with the card; Stripe attaches it (localstripe needs telling).
    confirmed = await stripe_processor.client.v1.setup_intents.confirm_async(
        setup_id, {"payment_method": "pm_card_visa", "client_secret": secret}
    )
    method_id, customer_id = confirmed.payment_method, confirmed.customer
    assert isinstance(method_id, str) and isinstance(customer_id, str)
    customer = await stripe_processor.client.v1.customers.retrieve_async(customer_id)
    assert customer.email == alice.email
    await stripe_processor.client.v1.payment_methods.attach_async(
        method_id, {"customer": customer_id}
    )
    announced = await stripe_client.post(
        "/processor/stripe/webhook",
        **delivery(event("setup_intent.succeeded", confirmed.to_dict())),
    )
    assert announced.status_code == 200, announced.text

    methods = await stripe_client.get("/user/payment/methods", headers=alice.headers)
    assert methods.status_code == 200, methods.text
    [card] = methods.json()["items"]
    assert (card["id"], card["card"]["brand"], card["card"]["last4"]) == (method_id, "visa", "4242")

    bought = await stripe_client.post(
        "/user/payment/credits", json={"amount": "25.00"}, headers=alice.headers
    )
    assert bought.status_code == 201, bought.text
    invoice = bought.json()
    assert (invoice["status"], invoice["paid"], Decimal(invoice["amount_paid"])) == (
        "paid",
        True,
        Decimal("25.00"),
    )
    async with reading(engine) as conn:
        assert (await get_balance(conn, customer=alice.user.customer)).stable_micros == 25_000_000
    # Stripe holds exactly that payment, with zoopay's key.
    page = await stripe_processor.client.v1.payment_intents.list_async({"limit": 100})
    intents = [
        item.to_dict() async for item in page.auto_paging_iter() if item.customer == customer_id
    ]
    assert [(item["amount"], item["status"]) for item in intents] == [(2500, "succeeded")]
    assert intents[0]["metadata"][KEY_METADATA] == f"invoice-{invoice['id']}-attempt-1"

    refund = {"amount": "5.00", "idempotency_key": "ticket-1"}
    for _ in range(2):  # the same key refunds once
        refunded = await stripe_client.post(
            f"/invoices/{invoice['id']}/refund", json=refund, headers=staff.headers
        )
        assert refunded.status_code == 200, refunded.text
        assert Decimal(refunded.json()["amount_refunded"]) == Decimal("5.00")
    refunds = await stripe_processor.client.v1.refunds.list_async(
        {"payment_intent": intents[0]["id"]}
    )
    assert [item.amount for item in refunds.data] == [500]
    async with reading(engine) as conn:
        assert (await get_balance(conn, customer=alice.user.customer)).stable_micros == 20_000_000
