"""Random histories of money movement (issue 9's property test), on the real services and the
real database, checked after every step by tests.support.books.money_problems: the journal
verifies (trial balance zero), no invoice is charged twice and the processor's cash is what
the invoices say, credits in = grants + purchases, total_due never negative and each paid
invoice's usage settled exactly once. Beside them, a model of each customer's plans: a refused
change changes nothing, and a close bills the next period's fee at the plan the period ended on.

Three customers (two users, an org of two members) change plans (paid upgrades through
billing.upgrades.change_plan_paid, downgrades), make calls (the metering service), buy credits
and pay open invoices (over HTTP, in process), add, remove and switch cards among a good one, a
failing one and one that needs authentication, see the clock move by hours to months, have
`billing run` close periods and dun (early, too, past a usage threshold they set), and get
part of a paid invoice refunded by staff.

Hypothesis' state machines are synchronous; the services are not. So the test is a plain
function that runs every step to completion on an event loop of its own, with an engine and an
app of its own on that loop (the suite's session engine lives on pytest-asyncio's loop); each
example starts from an empty database. `derandomize=True` makes the examples a function of the
test alone, the same on every machine and every run (no example database either): CI runs
exactly what a developer ran. A failure prints the steps, which replay as a plain test.
"""

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, Person, World, empty
from tests.support.books import money_problems
from tests.support.processor import AUTHENTICATES, DECLINES, VISA
from zoopay.app import create_app
from zoopay.billing.run import BillingTerms, run_billing
from zoopay.billing.upgrades import ChangeTerms, PlanChange, change_plan_paid
from zoopay.catalog.schemas import OptionFlat, PlanInterval, TierName
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.db.engine import create_engine, reading, transaction
from zoopay.db.tables import billing_closes, invoices, subscriptions
from zoopay.errors import ZoopayError
from zoopay.ledger.service import Customer
from zoopay.metering.schemas import ApiCallReport
from zoopay.metering.service import Reported, record_calls
from zoopay.money import format_micros
from zoopay.payments.flows import save_billing_info
from zoopay.payments.service import Address, BillingDetails, ensure_processor_customer
from zoopay.payments.thresholds import CUSTOMER_AUTHORITY, set_threshold, usage_threshold
from zoopay.processors.embedded import EmbeddedProcessor
from zoopay.subscriptions.periods import add_months, period_start
from zoopay.subscriptions.service import set_enterprise_price

T = TypeVar("T")

# Bounded so that a run takes well under two minutes per backend on a quiet machine.
PROPERTY_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=20,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
CARDS = (VISA, DECLINES, AUTHENTICATES)
# Bob's billing address is in Germany, taxed at 19%: his credit purchases carry tax.
TAX_RATES = {"DE": Decimal("0.19")}
# Cheaper than the team plan for two seats (2 x 99.00): team -> enterprise is a downgrade.
ENTERPRISE = OptionFlat(interval=PlanInterval.MONTH, price=Decimal("150.00"))
REPORTER_TOKEN = str(uuid.uuid4())


@dataclass
class Harness:
    """What every example shares: a loop, and an engine, app and client on it."""

    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    catalog: Catalog
    clock: Clock
    http: httpx.AsyncClient
    processor: EmbeddedProcessor
    billing: BillingTerms
    changes: ChangeTerms

    def run(self, step: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(step)


@dataclass(frozen=True)
class Payer:
    """A customer, the person who pays for it (a user, an org's admin) and who makes calls."""

    customer: Customer
    payer: Person
    callers: tuple[Person, ...]
    tiers: tuple[TierName, TierName]

    @property
    def base(self) -> str:
        return "/org" if self.customer.kind == "org" else "/user"


class MoneyMachine(RuleBasedStateMachine):
    harness: Harness  # set by the test before it runs the machine

    def __init__(self) -> None:
        super().__init__()
        self.h = type(self).harness
        self.h.clock.now = START
        self.h.run(empty(self.h.engine))
        self.payers: dict[str, Payer] = {}
        self.last_refund: tuple[str, dict[str, str]] | None = None
        # Each customer's plans as the model sees them: (from when, tier), oldest first.
        self.plans: dict[str, list[tuple[datetime, str]]] = {}

    @initialize()
    def customers(self) -> None:
        self.h.run(self._customers())

    async def _customers(self) -> None:
        h = self.h
        world = World(h.engine, h.catalog, h.clock)
        self.staff = await world.user(staff=True)
        alice, bob, carol, dave = [await world.user() for _ in range(4)]
        org = await world.org(carol, dave)
        acme = Customer("org", org.id)
        async with transaction(h.engine) as conn:
            await set_enterprise_price(conn, org=acme, price=ENTERPRISE, now=h.clock.now)
        personal = (TierName.FREE, TierName.PRO)
        self.payers = {
            "alice": Payer(alice.user.customer, alice, (alice,), personal),
            "bob": Payer(bob.user.customer, bob, (bob,), personal),
            "acme": Payer(acme, carol, (carol, dave), (TierName.TEAM, TierName.ENTERPRISE)),
        }
        await save_billing_info(
            h.engine,
            processor=h.processor,
            customer=bob.user.customer,
            details=BillingDetails(name="Bob", address=Address(country="DE", zip="10115")),
            creating=True,
            now=h.clock.now,
        )
        for payer in self.payers.values():
            await self._add_card(payer.customer, VISA)
        self.plans = {alice.id: [(START, "free")], bob.id: [(START, "free")], acme.id: []}

    # ------------------------------------------------------------------------------ rules

    @rule(
        who=st.sampled_from(["alice", "bob", "acme"]),
        choice=st.integers(0, 1),
        annually=st.sampled_from([None, False, True]),
    )
    def change_plan(self, who: str, choice: int, annually: bool | None) -> None:
        payer = self.payers[who]
        tier = payer.tiers[choice]
        before = self.h.run(self._plan(payer.customer))
        try:
            self.h.run(
                change_plan_paid(
                    self.h.engine,
                    catalog=self.h.catalog,
                    processor=self.h.processor,
                    terms=self.h.changes,
                    change=PlanChange(payer.customer, tier, annually, payer.payer.id),
                    now=self.h.clock.now,
                    create_only=False,
                )
            )
        except ZoopayError as refused:
            assert 400 <= refused.status_code < 500, refused
            assert self.h.run(self._plan(payer.customer)) == before, "a refused change changed"
        else:
            assert self.h.run(self._plan(payer.customer))[0] == tier.value
            self.plans[payer.customer.id].append((self.h.clock.now, tier.value))

    @rule(
        who=st.sampled_from(["alice", "bob", "acme"]),
        caller=st.integers(0, 1),
        price=st.integers(1, 40_000_000),
    )
    def call(self, who: str, caller: int, price: int) -> None:
        payer = self.payers[who]
        person = payer.callers[caller % len(payer.callers)]
        report = ApiCallReport.model_validate(
            {
                "id": str(uuid.uuid4()),
                "user_id": person.id,
                "endpoint": "/file/conversion",
                "method": "POST",
                "started_at": self.h.clock.now,
                "completed_at": self.h.clock.now,
                "price": format_micros(price),
            }
        )

        async def record() -> int:
            async with transaction(self.h.engine) as conn:
                [outcome] = await record_calls(
                    conn,
                    catalog=self.h.catalog,
                    reported=[Reported(report, REPORTER_TOKEN)],
                    now=self.h.clock.now,
                )
                return outcome.status

        assert self.h.run(record()) == 201

    @rule(who=st.sampled_from(["alice", "bob", "acme"]), cents=st.integers(100, 6000))
    def buy_credits(self, who: str, cents: int) -> None:
        payer = self.payers[who]
        body = {"amount": format_micros(cents * 10_000)}
        answer = self._post(f"{payer.base}/payment/credits", payer.payer, body)
        assert answer.status_code in (201, 402), answer.text

    @rule(who=st.sampled_from(["alice", "bob", "acme"]), dollars=st.sampled_from([None, 10, 25]))
    def set_threshold(self, who: str, dollars: int | None) -> None:
        """The customer's usage threshold (None: the default, 100.00): early invoices."""
        customer = self.payers[who].customer

        async def write() -> None:
            async with transaction(self.h.engine) as conn:
                current = await usage_threshold(conn, customer=customer)
                await set_threshold(
                    conn,
                    authority=CUSTOMER_AUTHORITY,
                    customer=customer,
                    amount_micros=None if dollars is None else dollars * 1_000_000,
                    expected_version=current.version,
                    now=self.h.clock.now,
                )

        self.h.run(write())

    @rule(who=st.sampled_from(["alice", "bob", "acme"]), card=st.sampled_from(CARDS))
    def add_card(self, who: str, card: str) -> None:
        self.h.run(self._add_card(self.payers[who].customer, card))

    @rule(who=st.sampled_from(["alice", "bob", "acme"]), pick=st.integers(0, 7))
    def remove_card(self, who: str, pick: int) -> None:
        async def remove() -> None:
            processor_id, cards = await self._cards(self.payers[who].customer)
            if cards:
                await self.h.processor.detach_payment_method(processor_id, cards[pick % len(cards)])

        self.h.run(remove())

    @rule(who=st.sampled_from(["alice", "bob", "acme"]), pick=st.integers(0, 7))
    def switch_card(self, who: str, pick: int) -> None:
        async def switch() -> None:
            processor_id, cards = await self._cards(self.payers[who].customer)
            if cards:
                await self.h.processor.set_default_payment_method(
                    processor_id, cards[pick % len(cards)]
                )

        self.h.run(switch())

    @rule(who=st.sampled_from(["alice", "bob", "acme"]), pick=st.integers(0, 7))
    def pay_now(self, who: str, pick: int) -> None:
        payer = self.payers[who]
        unpaid = self.h.run(self._invoices(payer.customer, ("open", "uncollectible")))
        if not unpaid:
            return
        invoice_id = unpaid[pick % len(unpaid)]
        answer = self._post(f"{payer.base}/payment/invoices/{invoice_id}/pay", payer.payer, {})
        assert answer.status_code in (200, 402, 409), answer.text
        if answer.status_code == 200:
            assert answer.json()["status"] == "paid", answer.text

    @rule(days=st.sampled_from([0, 1, 2, 3, 5, 8, 15, 29, 31, 45]), hours=st.integers(0, 23))
    def advance(self, days: int, hours: int) -> None:
        self.h.clock.advance(days=days, hours=hours)

    @rule(hours=st.sampled_from([0, 1, 30]))
    def past_period_end(self, hours: int) -> None:
        """To just after the users' next period end (a close, and what happens before it)."""
        start = period_start(START, self.h.clock.now)
        months = (start.year - START.year) * 12 + start.month - START.month
        self.h.clock.now = add_months(START, months + 1) + timedelta(hours=hours)

    @rule()
    def bill(self) -> None:
        h = self.h
        h.run(run_billing(h.engine, h.catalog, h.processor, h.billing, at=h.clock.now))
        for customer_id, period_end, next_tier in h.run(self._closed_now()):
            # The fee of the period that begins is billed at the plan the period ended on
            # (a plan change at or after its end is priced against that; dunning may put a
            # delinquent customer on free instead).
            if customer_id not in self.plans:
                continue  # staff, the org's members: free all along
            held = [tier for since, tier in self.plans[customer_id] if since < period_end]
            assert next_tier in (held[-1], "free"), (customer_id, period_end, next_tier)

    @rule(
        who=st.sampled_from(["alice", "bob", "acme"]),
        pick=st.integers(0, 7),
        percent=st.sampled_from([1, 10, 50, 100]),
    )
    def refund(self, who: str, pick: int, percent: int) -> None:
        paid = self.h.run(self._refundable(self.payers[who].customer))
        if not paid:
            return
        invoice_id, left = paid[pick % len(paid)]
        cents = max(1, left * percent // 100 // 10_000)
        body = {"amount": format_micros(cents * 10_000), "idempotency_key": uuid.uuid4().hex}
        answer = self._post(f"/invoices/{invoice_id}/refund", self.staff, body)
        assert answer.status_code in (200, 400, 409), answer.text
        if answer.status_code == 200:
            assert answer.json()["refund_status"] is not None, answer.text
            self.last_refund = (invoice_id, body)

    @precondition(lambda self: self.last_refund is not None)
    @rule()
    def refund_again(self) -> None:
        """Staff send a refund that was made again (a retry): it refunds nothing more. (A
        refused one is not kept: the same key may refund later, when it is allowed.)"""
        assert self.last_refund is not None
        invoice_id, body = self.last_refund
        before = self.h.run(self._refunded(invoice_id))
        answer = self._post(f"/invoices/{invoice_id}/refund", self.staff, body)
        assert answer.status_code == 200, answer.text
        assert self.h.run(self._refunded(invoice_id)) == before

    # -------------------------------------------------------------------------- the books

    @invariant()
    def books_add_up(self) -> None:
        async def check() -> list[str]:
            async with reading(self.h.engine) as conn:
                return await money_problems(conn)

        assert self.h.run(check()) == []

    # ------------------------------------------------------------------------------ helpers

    def _post(self, path: str, person: Person, body: dict[str, str]) -> httpx.Response:
        return self.h.run(self.h.http.post(path, headers=person.headers, json=body))

    async def _add_card(self, customer: Customer, card: str) -> None:
        processor_id = await ensure_processor_customer(
            self.h.engine, processor=self.h.processor, customer=customer, now=self.h.clock.now
        )
        attached = await self.h.processor.attach_test_card(processor_id, card)
        await self.h.processor.set_default_payment_method(processor_id, attached.id)

    async def _cards(self, customer: Customer) -> tuple[str, list[str]]:
        """The customer's cards in the order they were added (their ids are random; cards
        added at one instant are told apart by what they are, then by being the default)."""
        processor_id = await ensure_processor_customer(
            self.h.engine, processor=self.h.processor, customer=customer, now=self.h.clock.now
        )
        cards = await self.h.processor.list_payment_methods(processor_id)
        cards.sort(key=lambda card: (card.created_at, card.last4, card.is_default))
        return processor_id, [card.id for card in cards]

    async def _plan(self, customer: Customer) -> tuple[str, bool] | None:
        async with reading(self.h.engine) as conn:
            query = select(subscriptions.c.tier, subscriptions.c.pay_annually).where(
                subscriptions.c.customer_id == customer.id
            )
            row = (await conn.execute(query)).first()
        return None if row is None else (str(row[0]), bool(row[1]))

    async def _invoices(self, customer: Customer, statuses: tuple[str, ...]) -> list[str]:
        """The customer's invoices in these statuses, in the order they were issued (numbers
        follow customer ids within a run, and ids are random: created_at first)."""
        async with reading(self.h.engine) as conn:
            query = (
                select(invoices.c.id)
                .where(invoices.c.customer_id == customer.id, invoices.c.status.in_(statuses))
                .order_by(invoices.c.created_at, invoices.c.number)
            )
            return [str(i) for i in (await conn.execute(query)).scalars()]

    async def _refundable(self, customer: Customer) -> list[tuple[str, int]]:
        async with reading(self.h.engine) as conn:
            query = (
                select(
                    invoices.c.id, invoices.c.amount_paid_micros - invoices.c.amount_refunded_micros
                )
                .where(
                    invoices.c.customer_id == customer.id,
                    invoices.c.status == "paid",
                    invoices.c.charge_id.is_not(None),
                )
                .order_by(invoices.c.created_at, invoices.c.number)
            )
            return [(str(i), int(left)) for i, left in await conn.execute(query)]

    async def _closed_now(self) -> list[tuple[str, datetime, str]]:
        """The periods (not early closes) this run closed."""
        async with reading(self.h.engine) as conn:
            closes = billing_closes.c
            query = select(closes.customer_id, closes.period_end, closes.next_tier).where(
                closes.created_at == self.h.clock.now, closes.period_start != closes.period_end
            )
            return [(str(c), p, str(t)) for c, p, t in await conn.execute(query)]

    async def _refunded(self, invoice_id: str) -> int:
        async with reading(self.h.engine) as conn:
            query = select(invoices.c.amount_refunded_micros).where(invoices.c.id == invoice_id)
            return int((await conn.execute(query)).scalar_one())


def test_money_adds_up_whatever_happens(database_url: str, catalog: Catalog) -> None:
    loop = asyncio.new_event_loop()
    engine = create_engine(database_url)
    app_settings = Settings(database_url=database_url, tax_rates=TAX_RATES)
    app = create_app(app_settings, engine=engine, catalog=catalog)
    clock = Clock()
    app.state.clock = lambda: clock.now
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(transport=transport, base_url="http://zoopay.test")
    MoneyMachine.harness = Harness(
        loop=loop,
        engine=engine,
        catalog=catalog,
        clock=clock,
        http=http,
        processor=app.state.processor,
        billing=BillingTerms(
            dunning_days=app_settings.dunning_days,
            tax_rates=app_settings.tax_rates,
            invoice_prefix=app_settings.invoice_prefix,
        ),
        changes=app.state.change_terms,
    )
    try:
        run_state_machine_as_test(MoneyMachine, settings=PROPERTY_SETTINGS)
    finally:
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(engine.dispose())
        loop.close()
