"""The embedded processor: Stripe's test-card semantics, idempotent charges and refunds,
single-use setup intents, each call committed on its own."""

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.support.database import dump
from zoopay.db.engine import reading
from zoopay.db.tables import (
    payment_customers,
    processor_charges,
    processor_customers,
    processor_setup_intents,
)
from zoopay.ledger.service import Customer
from zoopay.payments.service import (
    ensure_processor_customer,
    ensure_processor_customers,
    processor_customer_id,
)
from zoopay.processors.base import (
    Card,
    Charge,
    ChargeRequest,
    ChargeStatus,
    CustomerRequest,
    CustomerResult,
    ProcessorError,
    ProcessorUnavailable,
)
from zoopay.processors.embedded import TEST_CARDS, EmbeddedProcessor, secret_hash


@pytest.fixture
def processor(engine: AsyncEngine, clock: Clock) -> EmbeddedProcessor:
    return EmbeddedProcessor(engine, lambda: clock.now)


async def customer_with(processor: EmbeddedProcessor, *tokens: str) -> tuple[str, list[Card]]:
    customer = await processor.create_customer(email="a@example.com", name="A", metadata={})
    cards = []
    for token in tokens:
        intent = await processor.create_setup_intent(customer)
        cards.append(await processor.confirm_setup_intent(intent.client_secret, token))
    return customer, cards


CARD_FACTS = [
    ("pm_card_visa", "visa", "4242"),
    ("pm_card_mastercard", "mastercard", "4444"),
    ("pm_card_chargeCustomerFail", "visa", "0341"),
    ("pm_card_authenticationRequired", "visa", "3184"),
]


@pytest.mark.parametrize(("token", "brand", "last4"), CARD_FACTS)
async def test_a_test_token_attaches_as_its_card(
    processor: EmbeddedProcessor, clock: Clock, token: str, brand: str, last4: str
) -> None:
    customer, [card] = await customer_with(processor, token)
    assert card.id.startswith("pm_")
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == (brand, last4, 12, 2029)
    assert (card.country, card.funding, card.is_default) == ("US", "credit", True)
    assert card.fingerprint == TEST_CARDS[token].fingerprint
    assert card.created_at == clock.now
    assert await processor.list_payment_methods(customer) == [card]
    assert await processor.default_payment_method(customer) == card.id


async def test_the_same_card_twice_has_one_fingerprint(processor: EmbeddedProcessor) -> None:
    _, (first, second, other) = await customer_with(
        processor, "pm_card_visa", "pm_card_visa", "pm_card_mastercard"
    )
    assert first.fingerprint == second.fingerprint != other.fingerprint
    assert first.id != second.id


async def test_a_declined_card_is_refused_on_attach_and_nothing_changes(
    processor: EmbeddedProcessor, engine: AsyncEngine
) -> None:
    customer, _ = await customer_with(processor)
    intent = await processor.create_setup_intent(customer)
    before = await dump(engine)
    with pytest.raises(ProcessorError) as refused:
        await processor.confirm_setup_intent(intent.client_secret, "pm_card_visa_chargeDeclined")
    assert refused.value.code == "card_declined"
    assert await dump(engine) == before
    # As with Stripe, the intent may then be confirmed with another card.
    card = await processor.confirm_setup_intent(intent.client_secret, "pm_card_visa")
    assert card.last4 == "4242"


async def test_a_setup_intent_is_single_use(
    processor: EmbeddedProcessor, engine: AsyncEngine
) -> None:
    customer, _ = await customer_with(processor)
    intent = await processor.create_setup_intent(customer)
    assert intent.id.startswith("seti_") and intent.client_secret.startswith(intent.id)
    await processor.confirm_setup_intent(intent.client_secret, "pm_card_visa")
    before = await dump(engine)
    for secret in (intent.client_secret, "seti_unknown_secret_x"):
        with pytest.raises(ProcessorError) as refused:
            await processor.confirm_setup_intent(secret, "pm_card_mastercard")
        assert refused.value.code in ("setup_intent_unexpected_state", "resource_missing")
    assert await dump(engine) == before
    assert len(await processor.list_payment_methods(customer)) == 1


async def test_the_client_secret_is_stored_hashed(
    processor: EmbeddedProcessor, engine: AsyncEngine
) -> None:
    customer, _ = await customer_with(processor)
    intent = await processor.create_setup_intent(customer)
    async with reading(engine) as conn:
        stored = (await conn.execute(select(processor_setup_intents))).mappings().one()
    assert stored["secret_hash"] == secret_hash(intent.client_secret)
    assert intent.client_secret not in str(dict(stored))


async def test_an_unknown_token_is_refused(processor: EmbeddedProcessor) -> None:
    customer, _ = await customer_with(processor)
    intent = await processor.create_setup_intent(customer)
    with pytest.raises(ProcessorError) as refused:
        await processor.confirm_setup_intent(intent.client_secret, "pm_card_amex_typo")
    assert refused.value.code == "invalid_payment_method"


CHARGE_OUTCOMES = [
    ("pm_card_visa", ChargeStatus.SUCCEEDED, None),
    ("pm_card_mastercard", ChargeStatus.SUCCEEDED, None),
    ("pm_card_chargeCustomerFail", ChargeStatus.FAILED, "card_declined"),
    ("pm_card_authenticationRequired", ChargeStatus.REQUIRES_ACTION, "authentication_required"),
]


@pytest.mark.parametrize(("token", "status", "code"), CHARGE_OUTCOMES)
async def test_a_charge_behaves_as_its_test_card(
    processor: EmbeddedProcessor, token: str, status: ChargeStatus, code: str | None
) -> None:
    customer, [card] = await customer_with(processor, token)
    request = ChargeRequest(
        customer, amount_cents=1999, currency="usd", idempotency_key="inv-1", description="x"
    )
    charge = await processor.charge(request)
    assert (charge.status, charge.failure_code) == (status, code)
    assert (charge.amount_cents, charge.currency, charge.payment_method_id) == (
        1999,
        "usd",
        card.id,
    )
    assert charge.id.startswith("pi_")
    assert await processor.find_charge(request) == charge


async def test_the_same_idempotency_key_takes_nothing_more(
    processor: EmbeddedProcessor, engine: AsyncEngine
) -> None:
    customer, _ = await customer_with(processor, "pm_card_visa")
    request = ChargeRequest(
        customer, amount_cents=500, currency="usd", idempotency_key="k", description="d"
    )
    first = await processor.charge(request)
    again = await processor.charge(request)
    assert again == first
    with pytest.raises(ProcessorError) as refused:
        await processor.charge(replace(request, amount_cents=600))
    assert refused.value.code == "idempotency_key_in_use"
    async with reading(engine) as conn:
        count = (await conn.execute(select(func.count()).select_from(processor_charges))).scalar()
    assert count == 1
    assert await processor.find_charge(replace(request, idempotency_key="other")) is None
    # Nor is it found as the charge of another request under its key (what reconcile asks).
    other_customer, _ = await customer_with(processor, "pm_card_visa")
    for other in (
        replace(request, amount_cents=600),
        replace(request, currency="eur"),
        replace(request, customer_id=other_customer),
    ):
        with pytest.raises(ProcessorError) as refused:
            await processor.find_charge(other)
        assert refused.value.code == "idempotency_key_in_use"


async def test_a_charge_needs_a_payment_method(processor: EmbeddedProcessor) -> None:
    customer, _ = await customer_with(processor)
    request = ChargeRequest(
        customer, amount_cents=500, currency="usd", idempotency_key="k", description="d"
    )
    with pytest.raises(ProcessorError) as refused:
        await processor.charge(request)
    assert refused.value.code == "no_payment_method"
    assert await processor.find_charge(request) is None


async def test_a_charge_names_a_method_of_the_customer_only(processor: EmbeddedProcessor) -> None:
    customer, _ = await customer_with(processor, "pm_card_visa")
    _, [foreign] = await customer_with(processor, "pm_card_visa")
    with pytest.raises(ProcessorError) as refused:
        await processor.charge(
            ChargeRequest(
                customer,
                amount_cents=500,
                currency="usd",
                idempotency_key="k",
                description="d",
                payment_method_id=foreign.id,
            )
        )
    assert refused.value.code == "resource_missing"


@pytest.mark.parametrize(("amount", "currency"), [(0, "usd"), (-1, "usd"), (100, "eur")])
async def test_bad_charges_are_refused(
    processor: EmbeddedProcessor, amount: int, currency: str
) -> None:
    customer, _ = await customer_with(processor, "pm_card_visa")
    request = ChargeRequest(
        customer, amount_cents=amount, currency=currency, idempotency_key="k", description=""
    )
    with pytest.raises(ProcessorError):
        await processor.charge(request)
    assert await processor.find_charge(request) is None


async def test_refunds_are_idempotent_and_bounded(processor: EmbeddedProcessor) -> None:
    customer, _ = await customer_with(processor, "pm_card_visa")
    charge = await processor.charge(
        ChargeRequest(
            customer, amount_cents=1000, currency="usd", idempotency_key="c", description=""
        )
    )
    part = await processor.refund(charge.id, amount_cents=400, idempotency_key="r1")
    assert (part.charge_id, part.amount_cents, part.status) == (charge.id, 400, "succeeded")
    assert await processor.refund(charge.id, amount_cents=400, idempotency_key="r1") == part
    with pytest.raises(ProcessorError) as refused:
        await processor.refund(charge.id, amount_cents=601, idempotency_key="r2")
    assert refused.value.code == "amount_too_large"
    rest = await processor.refund(charge.id, amount_cents=600, idempotency_key="r2")
    assert rest.amount_cents == 600


async def test_a_failed_charge_is_not_refundable(processor: EmbeddedProcessor) -> None:
    customer, _ = await customer_with(processor, "pm_card_chargeCustomerFail")
    charge = await processor.charge(
        ChargeRequest(
            customer, amount_cents=1000, currency="usd", idempotency_key="c", description=""
        )
    )
    with pytest.raises(ProcessorError) as refused:
        await processor.refund(charge.id, amount_cents=100, idempotency_key="r")
    assert refused.value.code == "charge_not_refundable"


async def test_default_first_then_newest_and_detach(
    processor: EmbeddedProcessor, clock: Clock
) -> None:
    customer, [visa] = await customer_with(processor, "pm_card_visa")
    clock.advance(minutes=1)
    intent = await processor.create_setup_intent(customer)
    master = await processor.confirm_setup_intent(intent.client_secret, "pm_card_mastercard")
    assert [card.id for card in await processor.list_payment_methods(customer)] == [
        visa.id,
        master.id,
    ]
    await processor.set_default_payment_method(customer, master.id)
    listed = await processor.list_payment_methods(customer)
    assert [(card.id, card.is_default) for card in listed] == [(master.id, True), (visa.id, False)]
    await processor.detach_payment_method(customer, master.id)
    assert await processor.default_payment_method(customer) is None
    assert [card.id for card in await processor.list_payment_methods(customer)] == [visa.id]
    for call in (processor.detach_payment_method, processor.set_default_payment_method):
        with pytest.raises(ProcessorError) as refused:
            await call(customer, master.id)
        assert refused.value.code == "resource_missing"


async def test_another_customers_method_is_missing(processor: EmbeddedProcessor) -> None:
    mine, _ = await customer_with(processor, "pm_card_visa")
    _, [theirs] = await customer_with(processor, "pm_card_visa")
    with pytest.raises(ProcessorError) as refused:
        await processor.set_default_payment_method(mine, theirs.id)
    assert refused.value.code == "resource_missing"


async def test_a_processor_customer_is_made_once_on_first_need(
    processor: EmbeddedProcessor, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    person = await world.user("alice@example.com")
    customer = person.user.customer
    async with reading(engine) as conn:
        assert await processor_customer_id(conn, customer=customer) is None
    made = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=clock.now
    )
    again = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=clock.now
    )
    assert made == again and made.startswith("cus_")
    async with reading(engine) as conn:
        assert await processor_customer_id(conn, customer=customer) == made
        rows = (await conn.execute(select(payment_customers))).mappings().all()
    assert [(row["customer_id"], row["processor"]) for row in rows] == [(person.id, "embedded")]


async def test_concurrent_charges_with_one_key_take_once(
    processor: EmbeddedProcessor, engine: AsyncEngine
) -> None:
    customer, _ = await customer_with(processor, "pm_card_visa")
    charges = await asyncio.gather(
        *[
            processor.charge(
                ChargeRequest(
                    customer,
                    amount_cents=700,
                    currency="usd",
                    idempotency_key="race",
                    description="",
                )
            )
            for _ in range(5)
        ]
    )
    assert len({charge.id for charge in charges}) == 1
    async with reading(engine) as conn:
        count = (await conn.execute(select(func.count()).select_from(processor_charges))).scalar()
    assert count == 1


async def test_concurrent_first_needs_record_one_processor_customer(
    processor: EmbeddedProcessor, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    person = await world.user()
    made = await asyncio.gather(
        *[
            ensure_processor_customer(
                engine, processor=processor, customer=person.user.customer, now=clock.now
            )
            for _ in range(4)
        ]
    )
    async with reading(engine) as conn:
        recorded = await processor_customer_id(conn, customer=person.user.customer)
    assert set(made) == {recorded}


class CountsBatches(EmbeddedProcessor):
    """The embedded processor, counting its customer calls; `lose` names emails whose
    creation is lost on the way (no answer), `before` runs ahead of each batch's answer."""

    def __init__(self, engine: AsyncEngine, clock: Clock, *, lose: frozenset[str] = frozenset()):
        super().__init__(engine, lambda: clock.now)
        self.lose = lose
        self.batches: list[list[str]] = []
        self.before: Callable[[], Awaitable[None]] | None = None

    async def create_customer(
        self, *, email: str, name: str | None, metadata: dict[str, str]
    ) -> str:
        raise AssertionError("a batch makes no customer one at a time")

    async def create_customers(self, requests: Sequence[CustomerRequest]) -> list[CustomerResult]:
        self.batches.append([request.email for request in requests])
        if self.before is not None:
            await self.before()
        kept = [request for request in requests if request.email not in self.lose]
        made = iter(await super().create_customers(kept))
        return [
            ProcessorUnavailable("lost") if r.email in self.lose else next(made) for r in requests
        ]


async def processor_customer_rows(engine: AsyncEngine) -> dict[str, dict[str, object]]:
    async with reading(engine) as conn:
        rows = (await conn.execute(select(processor_customers))).mappings().all()
    return {row["id"]: {"email": row["email"], **json.loads(row["metadata"])} for row in rows}


async def test_first_needs_of_many_are_one_batch_and_one_insert(
    processor: EmbeddedProcessor, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    people = [await world.user(f"p{n}@example.com") for n in range(3)]
    org = await world.org(people[0], name="Acme")
    known = await world.user("known@example.com")
    known_id = await ensure_processor_customer(
        engine, processor=processor, customer=known.user.customer, now=clock.now
    )
    customers = [p.user.customer for p in people] + [org.customer, known.user.customer]
    batching = CountsBatches(engine, clock)

    found = await ensure_processor_customers(
        engine, processor=batching, customers=customers, now=clock.now
    )

    # The org is billed at its billing email, its admin's unless one was given.
    assert [sorted(batch) for batch in batching.batches] == [
        ["p0@example.com", "p0@example.com", "p1@example.com", "p2@example.com"]
    ]
    assert found[known.user.customer] == known_id
    assert len(set(found.values())) == 5
    made = await processor_customer_rows(engine)
    for customer in customers:
        assert made[found[customer]]["zoopay_customer_id"] == customer.id
        assert made[found[customer]]["zoopay_customer_kind"] == customer.kind
    assert made[found[people[1].user.customer]]["email"] == "p1@example.com"
    async with reading(engine) as conn:
        for customer in customers:
            assert await processor_customer_id(conn, customer=customer) == found[customer]
    again = await ensure_processor_customers(
        engine, processor=batching, customers=customers, now=clock.now
    )
    assert again == found and len(batching.batches) == 1
    assert len(await processor_customer_rows(engine)) == 5


async def test_a_batch_that_loses_some_records_the_rest_and_a_rerun_makes_only_those(
    world: World, engine: AsyncEngine, clock: Clock
) -> None:
    people = [await world.user(f"q{n}@example.com") for n in range(4)]
    customers = [p.user.customer for p in people]
    losing = CountsBatches(engine, clock, lose=frozenset({"q2@example.com"}))
    answers = await ensure_processor_customers(
        engine, processor=losing, customers=customers, now=clock.now
    )
    assert isinstance(answers[customers[2]], ProcessorUnavailable)
    async with reading(engine) as conn:
        recorded = {c: await processor_customer_id(conn, customer=c) for c in customers}
    assert recorded[customers[2]] is None
    assert all(recorded[c] == answers[c] for c in customers if c != customers[2])

    batching = CountsBatches(engine, clock)
    found = await ensure_processor_customers(
        engine, processor=batching, customers=customers, now=clock.now
    )
    assert batching.batches == [["q2@example.com"]]
    assert {c: found[c] for c in customers if c != customers[2]} == {
        c: recorded[c] for c in customers if c != customers[2]
    }
    assert len(await processor_customer_rows(engine)) == 4


async def test_a_customer_with_no_email_to_bill_is_refused_alone_and_the_rest_are_made(
    world: World, engine: AsyncEngine, clock: Clock
) -> None:
    person = await world.user("r0@example.com")
    gone = Customer("user", str(uuid.uuid4()))  # no such user: no email to bill
    batching = CountsBatches(engine, clock)
    answers = await ensure_processor_customers(
        engine, processor=batching, customers=[gone, person.user.customer], now=clock.now
    )
    refused = answers[gone]
    assert isinstance(refused, ProcessorError) and refused.code == "no_billing_email"
    assert batching.batches == [["r0@example.com"]]
    async with reading(engine) as conn:
        assert await processor_customer_id(conn, customer=gone) is None
        made = await processor_customer_id(conn, customer=person.user.customer)
    assert made == answers[person.user.customer]


async def test_a_batch_racing_a_first_need_keeps_the_customer_recorded_first(
    processor: EmbeddedProcessor, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    racer, other = await world.user(), await world.user()
    customers = [racer.user.customer, other.user.customer]
    batching = CountsBatches(engine, clock)
    first: list[str] = []

    async def a_request_records_one_meanwhile() -> None:
        first.append(
            await ensure_processor_customer(
                engine, processor=processor, customer=racer.user.customer, now=clock.now
            )
        )

    batching.before = a_request_records_one_meanwhile
    found = await ensure_processor_customers(
        engine, processor=batching, customers=customers, now=clock.now
    )
    assert found[racer.user.customer] == first[0]
    async with reading(engine) as conn:
        assert await processor_customer_id(conn, customer=racer.user.customer) == first[0]
        assert (
            await processor_customer_id(conn, customer=other.user.customer)
            == found[other.user.customer]
        )
    # The batch's own customer for the racer stays at the processor, never recorded or charged.
    assert len(await processor_customer_rows(engine)) == 3


async def test_charge_many_answers_each_request_as_charge_would_in_one_batch(
    processor: EmbeddedProcessor,
) -> None:
    visa, _ = await customer_with(processor, "pm_card_visa")
    failing, _ = await customer_with(processor, "pm_card_chargeCustomerFail")
    cardless, _ = await customer_with(processor)
    earlier = await processor.charge(
        ChargeRequest(
            visa, amount_cents=500, currency="usd", idempotency_key="k-earlier", description="d"
        )
    )

    def request(customer: str, key: str, cents: int = 100) -> ChargeRequest:
        return ChargeRequest(customer, cents, "usd", key, "batch")

    results = await processor.charge_many(
        [
            request(visa, "k-1"),
            request(failing, "k-2"),
            request(cardless, "k-3"),
            request("cus_nobody", "k-4"),
            request(visa, "k-earlier", 500),  # a retry: the same charge
            request(visa, "k-earlier", 700),  # the key of another charge
            request(visa, "k-1"),  # the same key twice in the batch: charged once
            request(visa, "k-5", 0),
            request(failing, "k-1"),  # that key for another customer: not their charge
        ]
    )
    ok, fails, no_card, nobody, retry, misused, twice, zero, stolen = results
    assert isinstance(ok, Charge) and ok.status == ChargeStatus.SUCCEEDED
    assert isinstance(fails, Charge) and fails.failure_code == "card_declined"
    assert isinstance(no_card, ProcessorError) and no_card.code == "no_payment_method"
    assert isinstance(nobody, ProcessorError) and nobody.code == "resource_missing"
    assert retry == earlier
    assert isinstance(misused, ProcessorError) and misused.code == "idempotency_key_in_use"
    assert twice == ok
    assert isinstance(zero, ProcessorError) and zero.code == "invalid_amount"
    assert isinstance(stolen, ProcessorError) and stolen.code == "idempotency_key_in_use"
    assert await processor.find_charge(request(visa, "k-1")) == ok
    async with reading(processor._engine) as conn:
        count = (await conn.execute(select(func.count()).select_from(processor_charges))).scalar()
    assert count == 3  # k-earlier, k-1, k-2
