"""Billing from a test: the embedded processor, cards on file, `billing run` in-process."""

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, Person, World
from tests.support import processor as processor_support
from tests.support.processor import VISA, default_card, processor_customer
from zoopay.accounts.service import Org
from zoopay.billing.run import BillingTerms, RunSummary, run_billing
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import Catalog
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import processor_charges
from zoopay.journal.service import verify
from zoopay.ledger.service import Bucket, Customer, Posting, Reason, lock_balance, post
from zoopay.payments.service import ensure_processor_customer
from zoopay.processors.embedded import EmbeddedProcessor
from zoopay.subscriptions.service import change_plan

TERMS = BillingTerms(dunning_days=(1, 3, 5, 7), tax_rates={}, invoice_prefix="ZP")
# A month after START: the first period of every plan started at START has ended.
ENDED = START + timedelta(days=32)


def embedded(engine: AsyncEngine, clock: Clock) -> EmbeddedProcessor:
    """The embedded processor on a test's `Clock` (tests.support.processor.embedded takes a
    function of the time)."""
    return processor_support.embedded(engine, lambda: clock.now)


async def add_card(
    engine: AsyncEngine,
    processor: EmbeddedProcessor,
    customer: Customer,
    now: datetime,
    card: str = VISA,
) -> str:
    """A card on file as the customer's default (Stripe's test tokens); answers its id."""
    processor_id = await processor_customer(engine, processor, customer, now, card=None)
    return await default_card(processor, processor_id, card)


async def bill(
    engine: AsyncEngine,
    catalog: Catalog,
    processor: EmbeddedProcessor,
    at: datetime,
    terms: BillingTerms = TERMS,
) -> RunSummary:
    """`zoopay billing run --at`, in this process; the books verified clean after it."""
    summary = await run_billing(engine, catalog, processor, terms, at=at)
    await books_are_clean(engine)
    return summary


async def staff_plan(
    engine: AsyncEngine,
    catalog: Catalog,
    customer: Customer,
    tier: TierName,
    now: datetime,
    *,
    pay_annually: bool | None = None,
) -> None:
    """Put the customer on `tier` as staff would (comped: nothing charged)."""
    async with transaction(engine) as conn:
        await change_plan(
            conn,
            catalog=catalog,
            customer=customer,
            tier=tier,
            pay_annually=pay_annually,
            actor="staff",
            now=now,
        )


async def books_are_clean(engine: AsyncEngine) -> None:
    async with reading(engine) as conn:
        assert await verify(conn) == []


async def with_card(
    engine: AsyncEngine, clock: Clock, *payers: Person | Org | Customer, card: str = VISA
) -> None:
    """Give each payer (a user, an org, a customer) a card on file, `pm_card_visa` by default:
    a customer's own upgrade is charged to it (zoopay.billing.upgrades)."""
    processor = embedded(engine, clock)
    for payer in payers:
        await add_card(engine, processor, customer_of(payer), clock.now, card)


def customer_of(payer: Person | Org | Customer) -> Customer:
    if isinstance(payer, Customer):
        return payer
    if isinstance(payer, Person):
        return payer.user.customer
    return Customer("org", payer.id)


class PayingWorld:
    """Wraps a test's `World` so that every user and org it makes has `pm_card_visa` on file.

    For the tests written before upgrades were paid: they upgrade customers freely, and a
    customer who upgrades has a card. Their assertions are unchanged; the upgrade is paid."""

    def __init__(self, world: World, engine: AsyncEngine) -> None:
        self._world, self._engine = world, engine
        self._user, self._org = world.user, world.org

    def install(self) -> None:
        self._world.user = self.user  # type: ignore[method-assign]
        self._world.org = self.org  # type: ignore[method-assign]

    async def user(self, email: str | None = None, *, staff: bool = False) -> Person:
        person = await self._user(email, staff=staff)
        await with_card(self._engine, self._world.clock, person)
        return person

    async def org(self, admin: Person, *members: Person, name: str = "Acme") -> Org:
        org = await self._org(admin, *members, name=name)
        await with_card(self._engine, self._world.clock, org)
        return org


@pytest.fixture(autouse=True)
def cards_on_file(world: World, engine: AsyncEngine) -> None:
    """Autouse where a conftest imports it: every customer `world` makes has a card."""
    PayingWorld(world, engine).install()


def add_card_to(database_url: str, kind: str, customer_id: str, card: str = VISA) -> None:
    """For live-server tests: a card on file for a user or org of the server's database, as
    the embedded processor's card page would add it."""
    from datetime import UTC

    from zoopay.db.engine import create_engine

    async def run() -> None:
        engine = create_engine(database_url)
        try:
            clock = Clock(datetime.now(UTC))
            kind_of = "org" if kind == "org" else "user"
            await with_card(engine, clock, Customer(kind_of, customer_id), card=card)
        finally:
            await engine.dispose()

    asyncio.run(run())


async def without_cards(
    engine: AsyncEngine, now: datetime, *payers: Person | Org | Customer
) -> None:
    """Detach every card the payers have on file (as `DELETE .../payment/methods/{id}` would),
    for tests that count a customer's cards from none."""
    processor = EmbeddedProcessor(engine, lambda: now)
    for payer in payers:
        processor_id = await ensure_processor_customer(
            engine, processor=processor, customer=customer_of(payer), now=now
        )
        for card in await processor.list_payment_methods(processor_id):
            await processor.detach_payment_method(processor_id, card.id)


async def owe(engine: AsyncEngine, person: Person, micros: int) -> None:
    """`person` spent their monthly credits and owes `micros` more, as of START."""
    async with transaction(engine) as conn:
        balance = await lock_balance(conn, customer=person.user.customer)
        deltas = {Bucket.MONTHLY: -balance.monthly_micros, Bucket.TOTAL_DUE: micros}
        await post(
            conn,
            balance=balance,
            deltas=deltas,
            posting=Posting(Reason.API_CALL, "test"),
            now=START,
        )


async def charged_cents(engine: AsyncEngine) -> list[int]:
    """Each charge that succeeded, in cents, smallest first."""
    async with engine.connect() as conn:
        query = select(processor_charges.c.amount_cents).where(
            processor_charges.c.status == "succeeded"
        )
        return sorted(int(cents) for cents in (await conn.execute(query)).scalars())
