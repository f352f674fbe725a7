"""StripeProcessor against localstripe: every call of the PaymentProcessor protocol, through
the official SDK, with Stripe's test cards.

A card reaches Stripe the way Stripe.js sends it: the tests confirm setup intents with the SDK
(`pm_card_visa`, or card numbers for the cards localstripe knows by number), then attach the
method, which Stripe does on confirmation and localstripe does not.
"""

import json
import threading
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest
import stripe

from tests.support.localstripe import API_KEY
from zoopay.processors.base import (
    ChargeRequest,
    ChargeStatus,
    CustomerRequest,
    PaymentProcessor,
    ProcessorError,
    ProcessorUnavailable,
)
from zoopay.processors.stripe import KEY_METADATA, StripeConfig, StripeProcessor, customer_key

# Card numbers localstripe (like Stripe) gives a behaviour.
VISA = "4242424242424242"
DECLINED_ON_ATTACH = "4000000000000002"
DECLINED_ON_CHARGE = "4000000000000341"
AUTHENTICATION_REQUIRED = "4000002760003184"


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def new_customer(processor: StripeProcessor, name: str | None = "Ada") -> str:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    return await processor.create_customer(email=email, name=name, metadata={"zoopay": "t"})


async def add_card(processor: StripeProcessor, customer_id: str, number: str = VISA) -> str:
    """What Stripe.js does with a card the customer types: a setup intent confirmed with it."""
    intent = await processor.create_setup_intent(customer_id)
    confirmed = await processor.client.v1.setup_intents.confirm_async(
        intent.id,
        {
            "payment_method_data": {  # type: ignore[typeddict-item]
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        },
    )
    assert confirmed.status == "succeeded"
    method_id = confirmed.payment_method
    assert isinstance(method_id, str)
    await processor.client.v1.payment_methods.attach_async(method_id, {"customer": customer_id})
    return method_id


async def add_card_without_setup(processor: StripeProcessor, customer_id: str, number: str) -> str:
    """A card attached as it is (a card whose bank asks for 3-D Secure on every payment cannot
    finish a setup intent in localstripe, which has no way to authenticate one)."""
    method = await processor.client.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await processor.client.v1.payment_methods.attach_async(method.id, {"customer": customer_id})
    return method.id


async def intents_with_key(processor: StripeProcessor, idempotency_key: str) -> list[Any]:
    page = await processor.client.v1.payment_intents.list_async({"limit": 100})
    return [
        intent
        async for intent in page.auto_paging_iter()
        if intent.to_dict().get("metadata", {}).get(KEY_METADATA) == idempotency_key
    ]


def test_it_is_a_payment_processor(stripe_processor: StripeProcessor) -> None:
    processor: PaymentProcessor = stripe_processor
    assert processor.name == "stripe"


async def test_customer_is_created_and_updated(stripe_processor: StripeProcessor) -> None:
    customer_id = await stripe_processor.create_customer(
        email="ada@example.com", name="Ada", metadata={"zoopay_customer": "user:1"}
    )
    assert customer_id.startswith("cus_")
    customer = await stripe_processor.client.v1.customers.retrieve_async(customer_id)
    assert (customer.email, customer.name) == ("ada@example.com", "Ada")
    assert customer.metadata is not None
    assert customer.metadata.to_dict() == {"zoopay_customer": "user:1"}

    await stripe_processor.update_customer(customer_id, email="lovelace@example.com", name=None)
    customer = await stripe_processor.client.v1.customers.retrieve_async(customer_id)
    assert customer.email == "lovelace@example.com"
    assert await stripe_processor.default_payment_method(customer_id) is None
    assert await stripe_processor.list_payment_methods(customer_id) == []


async def test_customers_are_created_as_a_batch_in_their_order(
    stripe_processor: StripeProcessor,
) -> None:
    requests = [
        CustomerRequest(email=f"c{n}@example.com", name=None, metadata={"n": str(n)})
        for n in range(5)
    ]
    made = await stripe_processor.create_customers(requests)
    assert len(set(made)) == 5
    for n, customer_id in enumerate(made):
        assert isinstance(customer_id, str)
        customer = await stripe_processor.client.v1.customers.retrieve_async(customer_id)
        assert customer.email == f"c{n}@example.com"
        assert customer.metadata is not None
        assert customer.metadata.to_dict() == {"n": str(n)}


async def test_a_customer_asked_for_again_carries_its_first_request_key(
    stripe_processor: StripeProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # localstripe ignores Idempotency-Key, so what is sent is what is checked: Stripe answers
    # a key sent again with the same request by the customer it made the first time.
    sent: list[str] = []
    http = stripe_processor._http
    send = http.request_async

    async def recording(method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        if method == "post" and url.endswith("/v1/customers"):
            sent.append(headers["Idempotency-Key"])
        return await send(method, url, headers, post_data)

    monkeypatch.setattr(http, "request_async", recording)
    ada = {"zoopay_customer_kind": "user", "zoopay_customer_id": "u1"}
    first = CustomerRequest(email="ada@example.com", name="Ada", metadata=ada)
    await stripe_processor.create_customers([first])
    await stripe_processor.create_customer(email="ada@example.com", name="Ada", metadata=ada)
    await stripe_processor.create_customer(email="ada@lovelace.org", name="Ada", metadata=ada)
    other = {"zoopay_customer_kind": "user", "zoopay_customer_id": "u2"}
    await stripe_processor.create_customer(email="ada@example.com", name="Ada", metadata=other)
    assert len(sent) == 4
    assert sent[0] == sent[1] == customer_key("ada@example.com", "Ada", ada)
    assert sent[0].startswith("zoopay-customer:")
    assert len({sent[1], sent[2], sent[3]}) == 3


async def test_unknown_customer_is_resource_missing(stripe_processor: StripeProcessor) -> None:
    with pytest.raises(ProcessorError) as refused:
        await stripe_processor.default_payment_method("cus_doesnotexist")
    assert refused.value.code == "resource_missing"


async def test_setup_intent_confirmed_with_a_test_token(stripe_processor: StripeProcessor) -> None:
    customer_id = await new_customer(stripe_processor)
    intent = await stripe_processor.create_setup_intent(customer_id)
    assert intent.id.startswith("seti_")
    assert intent.client_secret.startswith(f"{intent.id}_secret_")
    confirmed = await stripe_processor.client.v1.setup_intents.confirm_async(
        intent.id, {"payment_method": "pm_card_visa"}
    )
    assert confirmed.status == "succeeded"
    method_id = confirmed.payment_method
    assert isinstance(method_id, str) and method_id.startswith("pm_")
    await stripe_processor.client.v1.payment_methods.attach_async(
        method_id, {"customer": customer_id}
    )

    [card] = await stripe_processor.list_payment_methods(customer_id)
    assert (card.id, card.brand, card.last4, card.exp_month, card.exp_year) == (
        method_id,
        "visa",
        "4242",
        12,
        2030,
    )
    assert card.is_default is False
    assert card.fingerprint


async def test_default_method_first_then_newest(stripe_processor: StripeProcessor) -> None:
    customer_id = await new_customer(stripe_processor)
    first = await add_card(stripe_processor, customer_id)
    second = await add_card(stripe_processor, customer_id, DECLINED_ON_CHARGE)
    await stripe_processor.set_default_payment_method(customer_id, first)
    assert await stripe_processor.default_payment_method(customer_id) == first

    cards = await stripe_processor.list_payment_methods(customer_id)
    assert [(card.id, card.is_default, card.last4) for card in cards] == [
        (first, True, "4242"),
        (second, False, "0341"),
    ]
    customer = await stripe_processor.client.v1.customers.retrieve_async(customer_id)
    assert customer.invoice_settings.default_payment_method == first

    await stripe_processor.set_default_payment_method(customer_id, second)
    assert await stripe_processor.default_payment_method(customer_id) == second

    # Detaching the default leaves none; the other card stays.
    await stripe_processor.detach_payment_method(customer_id, second)
    assert await stripe_processor.default_payment_method(customer_id) is None
    assert [card.id for card in await stripe_processor.list_payment_methods(customer_id)] == [first]


async def test_a_declined_card_is_not_attached(stripe_processor: StripeProcessor) -> None:
    customer_id = await new_customer(stripe_processor)
    intent = await stripe_processor.create_setup_intent(customer_id)
    with pytest.raises(stripe.CardError) as declined:
        await stripe_processor.client.v1.setup_intents.confirm_async(
            intent.id, {"payment_method": "pm_card_visa_chargeDeclined"}
        )
    assert declined.value.code == "card_declined"
    assert await stripe_processor.list_payment_methods(customer_id) == []


async def test_another_customers_method_is_missing(stripe_processor: StripeProcessor) -> None:
    owner, other = await new_customer(stripe_processor), await new_customer(stripe_processor)
    method_id = await add_card(stripe_processor, owner)
    for attempt in (
        stripe_processor.set_default_payment_method(other, method_id),
        stripe_processor.detach_payment_method(other, method_id),
        stripe_processor.set_default_payment_method(other, "pm_doesnotexist"),
        # A test token is never turned into a card by zoopay.
        stripe_processor.set_default_payment_method(other, "pm_card_visa"),
    ):
        with pytest.raises(ProcessorError) as refused:
            await attempt
        assert refused.value.code == "resource_missing"
    assert await stripe_processor.default_payment_method(other) is None
    await stripe_processor.set_default_payment_method(
        other, await add_card(stripe_processor, other)
    )
    charge_key = key()
    with pytest.raises(ProcessorError) as refused:
        await stripe_processor.charge(
            ChargeRequest(
                other,
                amount_cents=100,
                currency="usd",
                idempotency_key=charge_key,
                description="x",
                payment_method_id=method_id,
            )
        )
    assert refused.value.code == "resource_missing"
    assert await intents_with_key(stripe_processor, charge_key) == []
    # The owner's card is untouched.
    assert [card.id for card in await stripe_processor.list_payment_methods(owner)] == [method_id]


async def test_charge_once_per_idempotency_key(stripe_processor: StripeProcessor) -> None:
    customer_id = await new_customer(stripe_processor)
    method_id = await add_card(stripe_processor, customer_id)
    await stripe_processor.set_default_payment_method(customer_id, method_id)
    charge_key = key()

    request = ChargeRequest(
        customer_id,
        amount_cents=1234,
        currency="usd",
        idempotency_key=charge_key,
        description="Invoice 1",
    )
    first = await stripe_processor.charge(request)
    assert first.id.startswith("pi_")
    assert (first.status, first.amount_cents, first.currency) == (
        ChargeStatus.SUCCEEDED,
        1234,
        "usd",
    )
    assert (first.idempotency_key, first.payment_method_id) == (charge_key, method_id)
    assert (first.failure_code, first.failure_message) == (None, None)

    again = await stripe_processor.charge(request)
    assert again == first
    [intent] = await intents_with_key(stripe_processor, charge_key)
    assert (intent.id, intent.status, intent.amount) == (first.id, "succeeded", 1234)
    assert await stripe_processor.find_charge(request) == first

    with pytest.raises(ProcessorError) as refused:
        await stripe_processor.charge(replace(request, amount_cents=999))
    assert refused.value.code == "idempotency_key_in_use"
    # Nor is it found as the charge of another request under its key (what reconcile asks).
    for other in (
        replace(request, amount_cents=999),
        replace(request, currency="eur"),
        replace(request, customer_id=await new_customer(stripe_processor)),
    ):
        with pytest.raises(ProcessorError) as refused:
            await stripe_processor.find_charge(other)
        assert refused.value.code == "idempotency_key_in_use"
    assert len(await intents_with_key(stripe_processor, charge_key)) == 1


async def test_find_charge_of_an_unknown_key(stripe_processor: StripeProcessor) -> None:
    request = ChargeRequest("cus_x", 100, "usd", idempotency_key=key(), description="x")
    assert await stripe_processor.find_charge(request) is None


async def test_a_declined_charge_fails_with_its_code(stripe_processor: StripeProcessor) -> None:
    customer_id = await new_customer(stripe_processor)
    method_id = await add_card(stripe_processor, customer_id, DECLINED_ON_CHARGE)
    charge_key = key()
    request = ChargeRequest(
        customer_id,
        amount_cents=500,
        currency="usd",
        idempotency_key=charge_key,
        description="Invoice 2",
        payment_method_id=method_id,
    )
    failed = await stripe_processor.charge(request)
    assert (failed.status, failed.failure_code, failed.amount_cents) == (
        ChargeStatus.FAILED,
        "card_declined",
        500,
    )
    assert failed.failure_message == "Your card was declined."
    assert failed.payment_method_id == method_id
    assert await stripe_processor.find_charge(request) == failed
    # A retry with the same key answers the same failure and tries nothing new.
    again = await stripe_processor.charge(request)
    assert again == failed
    assert len(await intents_with_key(stripe_processor, charge_key)) == 1
    # Nothing to refund.
    with pytest.raises(ProcessorError):
        await stripe_processor.refund(failed.id, amount_cents=500, idempotency_key=key())


async def test_a_card_that_needs_3ds_requires_action(stripe_processor: StripeProcessor) -> None:
    customer_id = await new_customer(stripe_processor)
    method_id = await add_card_without_setup(stripe_processor, customer_id, AUTHENTICATION_REQUIRED)
    await stripe_processor.set_default_payment_method(customer_id, method_id)
    charge = await stripe_processor.charge(
        ChargeRequest(
            customer_id, amount_cents=700, currency="usd", idempotency_key=key(), description="x"
        )
    )
    assert charge.status == ChargeStatus.REQUIRES_ACTION
    assert charge.failure_code == "authentication_required"


async def test_no_default_method_no_charge(stripe_processor: StripeProcessor) -> None:
    customer_id = await new_customer(stripe_processor)
    await add_card(stripe_processor, customer_id)  # attached, but nobody made it the default
    request = ChargeRequest(
        customer_id, amount_cents=700, currency="usd", idempotency_key=key(), description="x"
    )
    with pytest.raises(ProcessorError) as refused:
        await stripe_processor.charge(request)
    assert refused.value.code == "no_payment_method"
    assert await stripe_processor.find_charge(request) is None


@pytest.mark.parametrize("amount", [0, -5])
async def test_amount_must_be_positive(stripe_processor: StripeProcessor, amount: int) -> None:
    with pytest.raises(ProcessorError) as refused:
        await stripe_processor.charge(
            ChargeRequest(
                "cus_x", amount_cents=amount, currency="usd", idempotency_key=key(), description="x"
            )
        )
    assert refused.value.code == "invalid_amount"


async def test_refund_once_per_idempotency_key(stripe_processor: StripeProcessor) -> None:
    customer_id = await new_customer(stripe_processor)
    await stripe_processor.set_default_payment_method(
        customer_id, await add_card(stripe_processor, customer_id)
    )
    charge = await stripe_processor.charge(
        ChargeRequest(
            customer_id, amount_cents=2000, currency="usd", idempotency_key=key(), description="x"
        )
    )
    refund_key = key()
    refund = await stripe_processor.refund(charge.id, amount_cents=500, idempotency_key=refund_key)
    assert refund.id.startswith("re_")
    assert (refund.charge_id, refund.amount_cents, refund.status, refund.idempotency_key) == (
        charge.id,
        500,
        "succeeded",
        refund_key,
    )
    assert (
        await stripe_processor.refund(charge.id, amount_cents=500, idempotency_key=refund_key)
        == refund
    )
    second = await stripe_processor.refund(charge.id, amount_cents=300, idempotency_key=key())
    assert second.id != refund.id

    listed = await stripe_processor.client.v1.refunds.list_async({"payment_intent": charge.id})
    assert sorted(item.amount for item in listed.data) == [300, 500]
    with pytest.raises(ProcessorError) as refused:
        await stripe_processor.refund(charge.id, amount_cents=400, idempotency_key=refund_key)
    assert refused.value.code == "idempotency_key_in_use"


async def test_refund_of_an_unknown_charge(stripe_processor: StripeProcessor) -> None:
    for charge_id in ("pi_doesnotexist", "ch_notanintent"):
        with pytest.raises(ProcessorError) as refused:
            await stripe_processor.refund(charge_id, amount_cents=100, idempotency_key=key())
        assert refused.value.code == "resource_missing"


async def test_portal_is_not_in_localstripe(stripe_processor: StripeProcessor) -> None:
    """localstripe has no billing portal (its 404 is not even Stripe's JSON): the call is
    Stripe's billing-portal session, and a server that does not answer it as Stripe would is
    ProcessorUnavailable, never a crash."""
    customer_id = await new_customer(stripe_processor)
    with pytest.raises(ProcessorUnavailable):
        await stripe_processor.portal_url(customer_id, return_url="https://app.example.com/")


async def test_a_server_that_does_not_answer_is_unavailable() -> None:
    # Nothing listens on port 9 of 127.0.0.1 here.
    processor = StripeProcessor(StripeConfig(api_key=API_KEY, api_base="http://127.0.0.1:9"))
    try:
        with pytest.raises(ProcessorUnavailable):
            await processor.create_customer(email="a@example.com", name=None, metadata={})
    finally:
        await processor.aclose()


class PortalStandIn(BaseHTTPRequestHandler):
    """Answers Stripe's `POST /v1/billing_portal/sessions` as Stripe documents it (localstripe
    has no billing portal), and keeps what it was sent."""

    received: ClassVar[list[tuple[str, str, dict[str, list[str]]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        self.received.append((self.path, self.headers.get("Authorization", ""), form))
        body = json.dumps(
            {
                "id": "bps_test",
                "object": "billing_portal.session",
                "created": 1767225600,
                "customer": form["customer"][0],
                "livemode": False,
                "return_url": form["return_url"][0],
                "url": "https://billing.stripe.com/p/session/test_bps",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


async def test_portal_is_a_billing_portal_session() -> None:
    stand_in = ThreadingHTTPServer(("127.0.0.1", 0), PortalStandIn)
    thread = threading.Thread(target=stand_in.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{stand_in.server_address[1]}"
    processor = StripeProcessor(StripeConfig(api_key=API_KEY, api_base=base))
    try:
        url = await processor.portal_url("cus_portal", return_url="https://app.example.com/back")
    finally:
        await processor.aclose()
        stand_in.shutdown()
        stand_in.server_close()
    assert url == "https://billing.stripe.com/p/session/test_bps"
    [(path, authorization, form)] = PortalStandIn.received
    assert path == "/v1/billing_portal/sessions"
    assert authorization == f"Bearer {API_KEY}"
    assert form == {"customer": ["cus_portal"], "return_url": ["https://app.example.com/back"]}
