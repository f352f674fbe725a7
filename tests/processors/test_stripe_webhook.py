"""POST /processor/stripe/webhook: signed events, each applied once through invoicing, against
localstripe (the payment intents and refunds in the events are localstripe's own)."""

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, World
from tests.support.errors import assert_error
from tests.support.processor import DOLLARS_25, Unreachable, open_credits_invoice, stable_micros
from tests.support.stripe_events import (
    WEBHOOK,
    delivery,
    event,
    intent_as_stripe_sends_it,
    stripe_customer_with_card,
)
from zoopay.config import Settings
from zoopay.db.engine import reading
from zoopay.db.tables import stripe_events
from zoopay.errors import ServiceUnavailable
from zoopay.invoicing.service import (
    AttemptStatus,
    InvoiceStatus,
    attempt_key,
    charge_invoice,
    get_invoice,
    list_attempts,
    reconcile_pending_charges,
    refund_invoice,
)
from zoopay.journal.service import Account, AccountKind, account_balance, invoice_journal
from zoopay.ledger.service import Customer
from zoopay.processors import processor_from_settings
from zoopay.processors.base import Charge, ProcessorUnavailable, Refund
from zoopay.processors.stripe import KEY_METADATA, StripeProcessor


async def recorded(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(stripe_events.c.id, stripe_events.c.type, stripe_events.c.outcome)
        )
        return sorted(tuple(row) for row in rows)  # type: ignore[misc]


class Crash(Exception):
    """zoopay dies after the processor answered, before it committed the answer."""


async def charge_and_crash(
    engine: AsyncEngine, processor: StripeProcessor, invoice_id: str, customer_id: str, now: Any
) -> Charge:
    answered: list[Charge] = []

    def crash(charge: Charge) -> None:
        answered.append(charge)
        raise Crash

    with pytest.raises(Crash):
        await charge_invoice(
            engine,
            processor,
            invoice_id=invoice_id,
            processor_customer_id=customer_id,
            now=now,
            after_answer=crash,
        )
    return answered[0]


async def crashed_purchase(
    engine: AsyncEngine,
    processor: StripeProcessor,
    customer: Customer,
    now: Any,
    card: str = "4242424242424242",
) -> tuple[str, Charge]:
    """A purchase of 25.00 of credits whose charge Stripe made and zoopay never recorded (it
    died after the answer): the invoice, and the charge its pending attempt does not know."""
    customer_id = await stripe_customer_with_card(processor, card)
    invoice_id = await open_credits_invoice(engine, now, customer)
    return invoice_id, await charge_and_crash(engine, processor, invoice_id, customer_id, now)


async def test_a_payment_left_pending_is_applied_once(
    stripe_client: httpx.AsyncClient,
    stripe_processor: StripeProcessor,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
) -> None:
    person = await world.user()
    invoice_id, charge = await crashed_purchase(
        engine, stripe_processor, person.user.customer, clock.now
    )
    async with reading(engine) as conn:
        [attempt] = await list_attempts(conn, invoice_id=invoice_id)
    assert attempt.status == AttemptStatus.PENDING

    payload = event(
        "payment_intent.succeeded", await intent_as_stripe_sends_it(stripe_processor, charge.id)
    )
    first = await stripe_client.post(WEBHOOK, **delivery(payload))
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "applied"
    assert first.json()["type"] == "payment_intent.succeeded"
    event_id = first.json()["id"]

    async with reading(engine) as conn:
        invoice = await get_invoice(conn, invoice_id=invoice_id)
        [attempt] = await list_attempts(conn, invoice_id=invoice_id)
    assert (invoice.status, invoice.amount_paid_micros, invoice.charge_id) == (
        InvoiceStatus.PAID,
        DOLLARS_25,
        charge.id,
    )
    assert (attempt.status, attempt.charge_id) == (AttemptStatus.SUCCEEDED, charge.id)
    assert await stable_micros(engine, person.user.customer) == DOLLARS_25

    # Stripe delivers it again (a new signature, the same event): nothing more is credited.
    again = await stripe_client.post(WEBHOOK, **delivery(payload))
    assert again.status_code == 200, again.text
    assert again.json() == {
        "id": event_id,
        "type": "payment_intent.succeeded",
        "outcome": "duplicate",
    }
    assert await stable_micros(engine, person.user.customer) == DOLLARS_25
    assert await recorded(engine) == [(event_id, "payment_intent.succeeded", "applied")]


@pytest.mark.parametrize(
    ("field", "value"),
    [("currency", "eur"), ("customer", "cus_someone_else"), ("amount", 2500.75)],
)
async def test_an_intent_that_is_not_the_attempts_charge_is_refused_and_pays_nothing(
    stripe_client: httpx.AsyncClient,
    stripe_processor: StripeProcessor,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
    field: str,
    value: object,
) -> None:
    """An intent under an attempt's key but in another currency, of another customer or of
    another amount (a fraction of a cent included) is not the charge zoopay asked for: 25.00
    EUR, or another customer's money, never pays a 25.00 USD invoice."""
    person = await world.user()
    invoice_id, charge = await crashed_purchase(
        engine, stripe_processor, person.user.customer, clock.now
    )
    intent = await intent_as_stripe_sends_it(stripe_processor, charge.id)
    intent[field] = value

    answer = await stripe_client.post(
        WEBHOOK, **delivery(event("payment_intent.succeeded", intent))
    )
    assert_error(answer, 409, "conflict")
    assert charge.id in answer.json()["message"]
    async with reading(engine) as conn:
        invoice = await get_invoice(conn, invoice_id=invoice_id)
        [attempt] = await list_attempts(conn, invoice_id=invoice_id)
    assert (invoice.status, invoice.amount_paid_micros) == (InvoiceStatus.OPEN, 0)
    assert attempt.status == AttemptStatus.PENDING
    assert await stable_micros(engine, person.user.customer) == 0
    assert await recorded(engine) == []


@pytest.mark.parametrize(
    ("field", "value"), [("currency", "eur"), ("customer", "another"), ("amount", 2499)]
)
async def test_reconcile_refuses_an_intent_under_the_key_that_is_not_the_attempts_charge(
    stripe_processor: StripeProcessor,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
    field: str,
    value: object,
) -> None:
    """Reconcile (a server's start, `zoopay billing run`, paying again) asks Stripe for the
    intent under a pending attempt's key: one in another currency, of another customer or of
    another amount is not its charge. The attempt fails as a retried charge would, the invoice
    stays open and owed, nothing is credited or posted; the next attempt charges it anew."""
    person = await world.user()
    customer_id = await stripe_customer_with_card(stripe_processor, "4242424242424242")
    invoice_id = await open_credits_invoice(engine, clock.now, person.user.customer)
    lost = Unreachable(engine, lambda: clock.now)  # the request never reaches Stripe
    with pytest.raises(ServiceUnavailable):
        await charge_invoice(
            engine, lost, invoice_id=invoice_id, processor_customer_id=customer_id, now=clock.now
        )
    terms: dict[str, Any] = {"amount": 2500, "currency": "usd", "customer": customer_id}
    if value == "another":
        value = await stripe_customer_with_card(stripe_processor, "4242424242424242")
    terms[field] = value
    # Someone else's intent carries the attempt's key (made outside zoopay, or a key reused).
    foreign = await stripe_processor.client.v1.payment_intents.create_async(
        {
            **terms,
            "payment_method": await stripe_processor.default_payment_method(terms["customer"]),
            "confirm": True,
            "off_session": True,
            "metadata": {KEY_METADATA: attempt_key(invoice_id, 1)},
        }
    )
    assert foreign.status == "succeeded"

    report = await reconcile_pending_charges(engine, stripe_processor, now=clock.now)
    async with reading(engine) as conn:
        invoice = await get_invoice(conn, invoice_id=invoice_id)
        [attempt] = await list_attempts(conn, invoice_id=invoice_id)
        cash = await account_balance(conn, Account(AccountKind.PROCESSOR_CASH))
        posted = [line.processor_ref for line in await invoice_journal(conn, invoice_id)]
    assert (report.applied, report.refunded) == ([attempt.id], [])
    assert (invoice.status, invoice.amount_paid_micros, invoice.charge_id) == (
        InvoiceStatus.OPEN,
        0,
        None,
    )
    assert (attempt.status, attempt.failure_code, attempt.charge_id) == (
        AttemptStatus.FAILED,
        "idempotency_key_in_use",
        None,
    )
    assert (cash, foreign.id in posted) == (0, False)
    assert await stable_micros(engine, person.user.customer) == 0

    # The customer pays: a new attempt, under a new key, is charged 25.00 USD and credited.
    paid = await charge_invoice(
        engine,
        stripe_processor,
        invoice_id=invoice_id,
        processor_customer_id=customer_id,
        now=clock.now,
    )
    assert paid.invoice.paid and paid.invoice.attempt_count == 2
    assert paid.invoice.charge_id != foreign.id
    assert await stable_micros(engine, person.user.customer) == DOLLARS_25


async def test_a_failed_payment_left_pending_fails_its_attempt(
    stripe_client: httpx.AsyncClient,
    stripe_processor: StripeProcessor,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
) -> None:
    person = await world.user()
    invoice_id, charge = await crashed_purchase(
        engine, stripe_processor, person.user.customer, clock.now, card="4000000000000341"
    )
    payload = event(
        "payment_intent.payment_failed",
        await intent_as_stripe_sends_it(stripe_processor, charge.id),
    )
    answer = await stripe_client.post(WEBHOOK, **delivery(payload))
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "applied"
    async with reading(engine) as conn:
        invoice = await get_invoice(conn, invoice_id=invoice_id)
        [attempt] = await list_attempts(conn, invoice_id=invoice_id)
    assert invoice.status == InvoiceStatus.OPEN
    assert (attempt.status, attempt.failure_code) == (AttemptStatus.FAILED, "card_declined")
    assert await stable_micros(engine, person.user.customer) == 0


async def test_an_event_already_applied_by_the_charge_is_recorded(
    stripe_client: httpx.AsyncClient,
    stripe_processor: StripeProcessor,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
) -> None:
    person = await world.user()
    customer_id = await stripe_customer_with_card(stripe_processor, "4242424242424242")
    invoice_id = await open_credits_invoice(engine, clock.now, person.user.customer)
    outcome = await charge_invoice(
        engine,
        stripe_processor,
        invoice_id=invoice_id,
        processor_customer_id=customer_id,
        now=clock.now,
    )
    assert outcome.invoice.status == InvoiceStatus.PAID
    assert outcome.attempt is not None and outcome.attempt.charge_id
    intent = await intent_as_stripe_sends_it(stripe_processor, outcome.attempt.charge_id)
    answer = await stripe_client.post(
        WEBHOOK, **delivery(event("payment_intent.succeeded", intent))
    )
    assert answer.json()["outcome"] == "recorded"
    assert await stable_micros(engine, person.user.customer) == DOLLARS_25


async def test_an_event_of_no_concern_is_recorded(
    stripe_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payload = event("customer.created", {"id": "cus_x", "object": "customer"}, "evt_other")
    answer = await stripe_client.post(WEBHOOK, **delivery(payload))
    assert answer.status_code == 200
    assert answer.json() == {"id": "evt_other", "type": "customer.created", "outcome": "recorded"}
    assert await recorded(engine) == [("evt_other", "customer.created", "recorded")]


class LosesRefundAnswers:
    """The Stripe processor, but the answer to a refund is lost on its way back."""

    def __init__(self, processor: StripeProcessor) -> None:
        self.processor = processor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)

    async def refund(self, charge_id: str, *, amount_cents: int, idempotency_key: str) -> Refund:
        await self.processor.refund(
            charge_id, amount_cents=amount_cents, idempotency_key=idempotency_key
        )
        raise ProcessorUnavailable("the answer was lost")


async def test_charge_refunded_completes_a_pending_refund(
    stripe_client: httpx.AsyncClient,
    stripe_processor: StripeProcessor,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
) -> None:
    person = await world.user()
    customer_id = await stripe_customer_with_card(stripe_processor, "4242424242424242")
    invoice_id = await open_credits_invoice(engine, clock.now, person.user.customer)
    paid = await charge_invoice(
        engine,
        stripe_processor,
        invoice_id=invoice_id,
        processor_customer_id=customer_id,
        now=clock.now,
    )
    assert paid.attempt is not None and paid.attempt.charge_id
    with pytest.raises(ServiceUnavailable):
        await refund_invoice(
            engine,
            LosesRefundAnswers(stripe_processor),  # type: ignore[arg-type]
            invoice_id=invoice_id,
            amount_micros=10_000_000,
            idempotency_key="r1",
            actor="staff",
            now=clock.now,
        )
    async with reading(engine) as conn:
        assert (await get_invoice(conn, invoice_id=invoice_id)).amount_refunded_micros == 0

    charge = {"id": "ch_x", "object": "charge", "payment_intent": paid.attempt.charge_id}
    answer = await stripe_client.post(WEBHOOK, **delivery(event("charge.refunded", charge)))
    assert answer.status_code == 200, answer.text
    async with reading(engine) as conn:
        invoice = await get_invoice(conn, invoice_id=invoice_id)
    assert invoice.amount_refunded_micros == 10_000_000
    assert await stable_micros(engine, person.user.customer) == DOLLARS_25 - 10_000_000
    # Stripe holds exactly one refund of $10.
    refunds = await stripe_processor.client.v1.refunds.list_async(
        {"payment_intent": paid.attempt.charge_id}
    )
    assert [refund.amount for refund in refunds.data] == [1000]


async def test_setup_intent_succeeded_makes_a_first_card_the_default(
    stripe_client: httpx.AsyncClient, stripe_processor: StripeProcessor
) -> None:
    customer_id = await stripe_processor.create_customer(
        email="b@example.com", name=None, metadata={}
    )
    intent = await stripe_processor.create_setup_intent(customer_id)
    confirmed = await stripe_processor.client.v1.setup_intents.confirm_async(
        intent.id, {"payment_method": "pm_card_visa"}
    )
    method_id = confirmed.payment_method
    assert isinstance(method_id, str)
    await stripe_processor.client.v1.payment_methods.attach_async(
        method_id, {"customer": customer_id}
    )
    payload = event("setup_intent.succeeded", confirmed.to_dict())
    answer = await stripe_client.post(WEBHOOK, **delivery(payload))
    assert answer.status_code == 200, answer.text
    assert await stripe_processor.default_payment_method(customer_id) == method_id

    # A second card does not take the default's place.
    other = await stripe_processor.client.v1.setup_intents.confirm_async(
        (await stripe_processor.create_setup_intent(customer_id)).id,
        {"payment_method": "pm_card_visa"},
    )
    assert isinstance(other.payment_method, str)
    await stripe_processor.client.v1.payment_methods.attach_async(
        other.payment_method, {"customer": customer_id}
    )
    await stripe_client.post(WEBHOOK, **delivery(event("setup_intent.succeeded", other.to_dict())))
    assert await stripe_processor.default_payment_method(customer_id) == method_id


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "tampered", "stale", "no_header", "garbled_header", "not_json"],
)
async def test_an_unsigned_event_is_refused_and_changes_nothing(
    stripe_client: httpx.AsyncClient, engine: AsyncEngine, case: str
) -> None:
    payload = event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})
    request = delivery(payload)
    if case == "wrong_secret":
        request = delivery(payload, secret="whsec_someone_else")
    elif case == "tampered":
        request["content"] = payload.replace(b"pi_x", b"pi_y")
    elif case == "stale":
        request = delivery(payload, at=int(time.time()) - 600)
    elif case == "no_header":
        del request["headers"]["Stripe-Signature"]
    elif case == "garbled_header":
        request["headers"]["Stripe-Signature"] = "v1=,t=notanumber"
    elif case == "not_json":
        request = delivery(b"not json at all")
    answer = await stripe_client.post(WEBHOOK, **request)
    assert_error(answer, 400, "bad_request")
    assert await recorded(engine) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'"evt_x"',
        b"null",
        b'{"id": "evt_\\u0000", "type": "customer.created", "data": {"object": {}}}',
        b'{"id": "evt_\\ud800", "type": "customer.created", "data": {"object": {}}}',
        b'{"id": "evt_x", "type": "customer.created", "data": {"object": {"id": "cus_\\u0000"}}}',
    ],
    ids=["array", "string", "null", "nul_in_id", "lone_surrogate", "nul_in_object_id"],
)
async def test_a_signed_payload_that_is_no_stripe_event_is_a_400(
    stripe_client: httpx.AsyncClient, engine: AsyncEngine, payload: bytes
) -> None:
    """Only the secret's holder can sign it, but a payload of the wrong shape is still bad
    input (a 400, nothing recorded), not a 500."""
    answer = await stripe_client.post(WEBHOOK, **delivery(payload))
    assert_error(answer, 400, "bad_request")
    assert await recorded(engine) == []


async def test_an_intent_of_odd_shape_is_recorded_or_refused_never_a_500(
    stripe_client: httpx.AsyncClient,
    stripe_processor: StripeProcessor,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
) -> None:
    # Metadata that is no object names no charge of zoopay's; an object id too long for its
    # column is kept cut, as the event's own id is.
    odd = {"id": "pi_" + "x" * 300, "object": "payment_intent", "metadata": "zoopay"}
    answer = await stripe_client.post(
        WEBHOOK, **delivery(event("payment_intent.succeeded", odd, "evt_odd"))
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "id": "evt_odd",
        "type": "payment_intent.succeeded",
        "outcome": "recorded",
    }
    async with reading(engine) as conn:
        object_id = (await conn.execute(select(stripe_events.c.object_id))).scalar_one()
    assert object_id == odd["id"][:255]

    # A last_payment_error that is no object, on an attempt's own intent: a 400, nothing paid.
    person = await world.user()
    invoice_id, charge = await crashed_purchase(
        engine, stripe_processor, person.user.customer, clock.now, card="4000000000000341"
    )
    intent = await intent_as_stripe_sends_it(stripe_processor, charge.id)
    intent["last_payment_error"] = "card_declined"
    answer = await stripe_client.post(
        WEBHOOK, **delivery(event("payment_intent.payment_failed", intent))
    )
    assert_error(answer, 400, "bad_request")
    async with reading(engine) as conn:
        [attempt] = await list_attempts(conn, invoice_id=invoice_id)
        assert (await get_invoice(conn, invoice_id=invoice_id)).status == InvoiceStatus.OPEN
    assert attempt.status == AttemptStatus.PENDING
    assert await recorded(engine) == [("evt_odd", "payment_intent.succeeded", "recorded")]


async def test_without_a_secret_every_event_is_refused(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payload = event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})
    answer = await client.post(WEBHOOK, **delivery(payload))
    assert_error(answer, 400, "bad_request")
    assert "ZOOPAY_STRIPE_WEBHOOK_SECRET" in answer.json()["message"]
    async with reading(engine) as conn:
        assert (await conn.execute(select(func.count()).select_from(stripe_events))).scalar() == 0


async def test_the_document_declares_what_the_webhook_answers(
    stripe_client: httpx.AsyncClient,
) -> None:
    document = (await stripe_client.get("/openapi.json")).json()
    operation = document["paths"][WEBHOOK]["post"]
    assert operation["operationId"] == "stripe_webhook"
    assert {int(status) for status in operation["responses"]} == {200, 400, 409, 413, 415, 503}
    [header] = operation["parameters"]
    assert (header["name"], header["in"], header["required"]) == (
        "Stripe-Signature",
        "header",
        True,
    )
    assert "security" not in operation


async def test_a_body_that_is_not_json_is_415(
    stripe_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payload = event("customer.created", {"id": "cus_x", "object": "customer"})
    request = delivery(payload)
    request["headers"]["Content-Type"] = "text/plain"
    assert_error(await stripe_client.post(WEBHOOK, **request), 415)
    assert await recorded(engine) == []


def test_stripe_is_chosen_by_settings_and_needs_a_key(
    database_url: str, localstripe_url: str, engine: AsyncEngine
) -> None:
    with pytest.raises(ValueError, match="ZOOPAY_STRIPE_API_KEY"):
        Settings(database_url=database_url, processor="stripe")
    settings = Settings(
        database_url=database_url,
        processor="stripe",
        stripe_api_key="sk_test_secret_value",
        stripe_api_base=localstripe_url,
        stripe_webhook_secret="whsec_secret_value",
    )
    # Secrets never show in a repr (a log line, a traceback).
    assert "sk_test_secret_value" not in repr(settings)
    assert "whsec_secret_value" not in repr(settings)
    processor = processor_from_settings(settings, engine=engine, clock=lambda: START)
    assert isinstance(processor, StripeProcessor)
    assert processor.name == "stripe"
