"""A process killed (SIGKILL) between the processor's answer and zoopay's commit: the next
start reconciles it. Exactly one charge at the processor, the invoice paid once, the credits
delivered once, the books clean."""

import json
import os
import signal
import subprocess
import sys
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.support.processor import charge_count, embedded, processor_customer, succeeded_cents
from zoopay.app import create_app
from zoopay.config import Settings
from zoopay.db.engine import reading, transaction
from zoopay.invoicing.bulk import Due, charge_invoices
from zoopay.invoicing.service import (
    AttemptStatus,
    InvoiceStatus,
    charge_invoice,
    credits_line,
    get_invoice,
    issue_invoice,
    list_attempts,
    reconcile_pending_charges,
)
from zoopay.journal.service import verify
from zoopay.ledger.service import get_balance

# Run in a process of its own: charge the invoice and SIGKILL itself the moment the processor
# has answered, before the answer is committed.
# What both killed processes share: the engine, the processor, and dying on the answer.
DIE_ON_ANSWER = r"""
import asyncio, json, os, signal, sys
from datetime import datetime
from zoopay.db.engine import create_engine
from zoopay.processors.embedded import EmbeddedProcessor

url, target, now = sys.argv[1:4]
moment = datetime.fromisoformat(now)

def die(_answer):
    os.kill(os.getpid(), signal.SIGKILL)

def parts():
    engine = create_engine(url)
    return engine, EmbeddedProcessor(engine, lambda: moment)
"""

CHARGE_AND_DIE = (
    DIE_ON_ANSWER
    + r"""
from zoopay.invoicing.service import charge_invoice

async def main():
    engine, processor = parts()
    invoice_id, customer_id = json.loads(target)
    await charge_invoice(engine, processor, invoice_id=invoice_id,
                         processor_customer_id=customer_id, now=moment, after_answer=die)

asyncio.run(main())
"""
)


def charge_in_a_process_that_dies(
    url: str, invoice_id: str, customer_id: str, now: datetime
) -> int:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHARGE_AND_DIE,
            url,
            json.dumps([invoice_id, customer_id]),
            now.isoformat(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    return done.returncode


async def test_a_killed_charge_is_reconciled_on_start_and_charged_once(
    engine: AsyncEngine, world: World, clock: Clock, database_url: str
) -> None:
    person = await world.user()
    customer = person.user.customer
    processor = embedded(engine, lambda: clock.now)
    cus = await processor_customer(engine, processor, customer, clock.now)
    async with transaction(engine) as conn:
        invoice = await issue_invoice(
            conn,
            customer=customer,
            lines=[credits_line(amount_micros=25_000_000)],
            description="credits",
            tax_rates={},
            prefix="ZP",
            now=clock.now,
        )

    assert (
        charge_in_a_process_that_dies(database_url, invoice.id, cus, clock.now) == -signal.SIGKILL
    )

    # The processor took the money; zoopay's database does not know yet.
    assert await succeeded_cents(engine) == 2500
    async with reading(engine) as conn:
        assert (await get_invoice(conn, invoice_id=invoice.id)).status == InvoiceStatus.OPEN
        [attempt] = await list_attempts(conn, invoice_id=invoice.id)
        assert attempt.status == AttemptStatus.PENDING
        assert (await get_balance(conn, customer=customer)).stable_micros == 0

    # The server starts: its start-up reconciles.
    app = create_app(Settings(database_url=database_url), engine=engine)
    app.state.clock = lambda: clock.now
    async with app.router.lifespan_context(app):
        pass

    async with reading(engine) as conn:
        paid = await get_invoice(conn, invoice_id=invoice.id)
        [attempt] = await list_attempts(conn, invoice_id=invoice.id)
        balance = await get_balance(conn, customer=customer)
        problems = await verify(conn)
    assert paid.status == InvoiceStatus.PAID and paid.amount_paid_micros == 25_000_000
    assert attempt.status == AttemptStatus.SUCCEEDED and paid.charge_id == attempt.charge_id
    assert balance.stable_micros == 25_000_000
    assert problems == []

    # Paying again, or reconciling again, takes nothing more.
    again = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    assert again.attempt is None and again.invoice.paid
    assert await charge_count(engine) == 1 and await succeeded_cents(engine) == 2500
    async with reading(engine) as conn:
        assert (await get_balance(conn, customer=customer)).stable_micros == 25_000_000


# The batched path (billing run): the whole batch answered by the processor, then killed
# before any answer is committed.
CHARGE_BATCH_AND_DIE = (
    DIE_ON_ANSWER
    + r"""
from zoopay.invoicing.bulk import Due, charge_invoices

async def main():
    engine, processor = parts()
    batch = [Due(invoice_id, customer_id) for invoice_id, customer_id in json.loads(target)]
    await charge_invoices(engine, processor, due=batch, now=moment, after_answers=die)

asyncio.run(main())
"""
)


async def test_a_batch_killed_after_the_processor_answered_is_reconciled_and_charged_once(
    engine: AsyncEngine, world: World, clock: Clock, database_url: str
) -> None:
    people = [await world.user() for _ in range(3)]
    processor = embedded(engine, lambda: clock.now)
    due = []
    for n, person in enumerate(people):
        cus = await processor_customer(engine, processor, person.user.customer, clock.now)
        async with transaction(engine) as conn:
            invoice = await issue_invoice(
                conn,
                customer=person.user.customer,
                lines=[credits_line(amount_micros=(n + 1) * 10_000_000)],
                description="credits",
                tax_rates={},
                prefix="ZP",
                now=clock.now,
            )
        due.append((invoice.id, cus))

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHARGE_BATCH_AND_DIE,
            database_url,
            json.dumps(due),
            clock.now.isoformat(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr

    # The processor took all three; zoopay's database knows of none.
    assert await succeeded_cents(engine) == 1000 + 2000 + 3000
    async with reading(engine) as conn:
        for invoice_id, _ in due:
            assert (await get_invoice(conn, invoice_id=invoice_id)).status == InvoiceStatus.OPEN
            [attempt] = await list_attempts(conn, invoice_id=invoice_id)
            assert attempt.status == AttemptStatus.PENDING

    # The next billing run starts by reconciling: by key, nothing charged again.
    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert len(report.applied) == 3
    again = await charge_invoices(engine, processor, due=[Due(i, c) for i, c in due], now=clock.now)
    assert again == []  # all paid: nothing tried
    assert await charge_count(engine) == 3 and await succeeded_cents(engine) == 6000
    async with reading(engine) as conn:
        for n, (person, (invoice_id, _)) in enumerate(zip(people, due, strict=True)):
            paid = await get_invoice(conn, invoice_id=invoice_id)
            [attempt] = await list_attempts(conn, invoice_id=invoice_id)
            balance = await get_balance(conn, customer=person.user.customer)
            assert paid.status == InvoiceStatus.PAID and paid.charge_id == attempt.charge_id
            assert balance.stable_micros == (n + 1) * 10_000_000
        assert await verify(conn) == []
