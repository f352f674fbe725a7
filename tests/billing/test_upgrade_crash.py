"""A paid upgrade whose process is killed (SIGKILL) after the charge and before the plan change
commits: nobody keeps money for a change that never happened. Until the payment is stale a
retry is refused (a 409, not a second charge); then the billing run, a server's start or the
customer's next change refunds it in full, once."""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person, World
from tests.support.billing import add_card, bill, books_are_clean, embedded
from tests.support.processor import charge_count, refunded_cents, succeeded_cents
from zoopay.app import create_app
from zoopay.billing.upgrades import STALE_PAYMENT
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.db.tables import invoices, plan_change_payments, subscriptions
from zoopay.processors.embedded import EmbeddedProcessor

URL = "/user/payment/subscriptions"

# Upgrade to pro in a process of its own, and die at `point`: "applying" (the charge settled,
# the plan change's transaction under way) or "answer" (the processor answered, nothing of it
# committed).
UPGRADE_AND_DIE = r"""
import asyncio, os, signal, sys
from datetime import datetime
from decimal import Decimal
from zoopay.billing import upgrades
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import load_catalog
from zoopay.db.engine import create_engine
from zoopay.invoicing import service as invoicing
from zoopay.ledger.service import Customer
from zoopay.processors.embedded import EmbeddedProcessor

url, user_id, now, point = sys.argv[1:5]
moment = datetime.fromisoformat(now)

def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

calls = []
change_plan = upgrades.change_plan

async def change_then_die(conn, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the first is the trial before the charge; the second applies
        await change_plan(conn, **kwargs)
        die()
    return await change_plan(conn, **kwargs)

if point == "applying":
    upgrades.change_plan = change_then_die
else:
    charge = invoicing.charge_invoice
    async def charge_and_die(*args, **kwargs):
        return await charge(*args, **kwargs, after_answer=die)
    upgrades.charge_invoice = charge_and_die

async def main():
    engine = create_engine(url)
    await upgrades.change_plan_paid(
        engine,
        catalog=load_catalog(),
        processor=EmbeddedProcessor(engine, lambda: moment),
        terms=upgrades.ChangeTerms(tax_rates={}, invoice_prefix="ZP"),
        change=upgrades.PlanChange(
            Customer("user", user_id), TierName.PRO, pay_annually=None, actor=user_id
        ),
        now=moment,
        create_only=False,
    )

asyncio.run(main())
"""


def upgrade_in_a_process_that_dies(url: str, user_id: str, clock: Clock, point: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", UPGRADE_AND_DIE, url, user_id, clock.now.isoformat(), point],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


async def _state(engine: AsyncEngine) -> tuple[str, list[tuple[str, str]]]:
    """The user's tier, and each plan change payment with its invoice's status."""
    async with engine.connect() as conn:
        tier = (await conn.execute(select(subscriptions.c.tier))).scalar_one()
        query = (
            select(plan_change_payments.c.status, invoices.c.status)
            .join(invoices, invoices.c.id == plan_change_payments.c.invoice_id)
            .order_by(plan_change_payments.c.created_at)
        )
        payments = [(str(p), str(i)) for p, i in await conn.execute(query)]
    return str(tier), payments


async def _crashed_upgrade(
    engine: AsyncEngine, world: World, clock: Clock, database_url: str, point: str
) -> tuple[EmbeddedProcessor, Person]:
    """Alice, with a card, whose upgrade to pro was killed at `point`: charged 49.00, on free."""
    processor = embedded(engine, clock)
    alice = await world.user()
    await add_card(engine, processor, alice.user.customer, clock.now)
    upgrade_in_a_process_that_dies(database_url, alice.id, clock, point)
    assert await succeeded_cents(engine) == 4900
    return processor, alice


async def test_a_paid_upgrade_killed_before_the_plan_changed_is_refunded_by_the_billing_run(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
    catalog: Catalog,
    database_url: str,
) -> None:
    processor, alice = await _crashed_upgrade(engine, world, clock, database_url, "applying")
    # Charged and paid; the plan did not change.
    assert await _state(engine) == ("free", [("charging", "paid")])

    # A retry meanwhile is refused, and charges nothing.
    clock.advance(minutes=1)
    retry = await client.put(URL, headers=alice.headers, json={"modeling_app": "pro"})
    assert retry.status_code == 409, retry.text
    assert "in progress" in retry.json()["message"]
    assert await succeeded_cents(engine) == 4900

    # The billing run once the payment is stale: refunded in full, once.
    clock.now += STALE_PAYMENT
    summary = await bill(engine, catalog, processor, clock.now)
    assert summary.reconciled == 1
    assert await refunded_cents(engine) == 4900
    assert await _state(engine) == ("free", [("refunded", "paid")])
    await bill(engine, catalog, processor, clock.now)
    assert await refunded_cents(engine) == 4900
    await books_are_clean(engine)

    # And now the customer can upgrade, charged once for it.
    again = await client.put(URL, headers=alice.headers, json={"modeling_app": "pro"})
    assert again.status_code == 200, again.text
    assert await charge_count(engine) == 2  # a second charge, kept
    assert await _state(engine) == (
        "pro",
        [("refunded", "paid"), ("applied", "paid")],
    )
    await books_are_clean(engine)


async def test_an_upgrade_killed_on_the_processors_answer_is_reconciled_then_refunded_at_start(
    engine: AsyncEngine, world: World, clock: Clock, database_url: str
) -> None:
    await _crashed_upgrade(engine, world, clock, database_url, "answer")
    assert await _state(engine) == ("free", [("charging", "open")])

    clock.now += STALE_PAYMENT + timedelta(seconds=1)
    app = create_app(Settings(database_url=database_url), engine=engine)
    app.state.clock = lambda: clock.now
    async with app.router.lifespan_context(app):
        pass
    # The start reconciled the charge (the invoice paid), then refunded the upgrade never
    # applied.
    assert await refunded_cents(engine) == 4900
    assert await _state(engine) == ("free", [("refunded", "paid")])
    await books_are_clean(engine)


async def test_a_crashed_upgrade_is_refunded_when_the_customer_changes_again(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock, database_url: str
) -> None:
    _, alice = await _crashed_upgrade(engine, world, clock, database_url, "applying")
    clock.now += STALE_PAYMENT
    again = await client.put(URL, headers=alice.headers, json={"modeling_app": "pro"})
    assert again.status_code == 200, again.text
    assert await refunded_cents(engine) == 4900
    assert await _state(engine) == ("pro", [("refunded", "paid"), ("applied", "paid")])
    await books_are_clean(engine)
