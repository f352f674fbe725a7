"""`zoopay ledger verify`: clean books print ok and exit 0; a corrupted row is named, exit 1."""

import json
import subprocess

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.support.cli import ZOOPAY, zoopay_env
from tests.support.processor import embedded, processor_customer
from zoopay.db.engine import transaction
from zoopay.db.tables import balances, journal_lines
from zoopay.invoicing.service import charge_invoice, credits_line, issue_invoice


def verify(database_url: str) -> tuple[int, dict[str, object]]:
    env = zoopay_env(database_url)
    done = subprocess.run(
        [ZOOPAY, "ledger", "verify"], capture_output=True, text=True, env=env, timeout=60
    )
    return done.returncode, json.loads(done.stdout)


async def test_verify_is_clean_after_a_purchase_and_names_each_corruption(
    engine: AsyncEngine, world: World, clock: Clock, database_url: str
) -> None:
    person = await world.user()
    async with transaction(engine) as conn:
        invoice = await issue_invoice(
            conn,
            customer=person.user.customer,
            lines=[credits_line(amount_micros=12_340_000)],
            description="credits",
            tax_rates={},
            prefix="ZP",
            now=clock.now,
        )
    processor = embedded(engine, lambda: clock.now)
    cus = await processor_customer(engine, processor, person.user.customer, clock.now)
    await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    assert verify(database_url) == (0, {"ok": True, "problems": []})

    async with transaction(engine) as conn:
        await conn.execute(
            update(journal_lines)
            .where(journal_lines.c.account_id == "processor_cash")
            .values(amount_micros=12_340_001)
        )
        await conn.execute(
            update(balances)
            .where(balances.c.customer_id == person.id)
            .values(stable_micros=balances.c.stable_micros + 5)
        )
    code, report = verify(database_url)
    assert code == 1 and report["ok"] is False
    assert report["problems"] == [
        "journal account processor_cash holds 12340000 micro-dollars, its lines sum to 12340001",
        f"journal posting {_charge_posting(report)} sums to 1, not zero",
        "the trial balance is 1 micro-dollars, not zero",
        f"the stable balance of user {person.id} is 12340005 micro-dollars,"
        " its ledger entries sum to 12340000",
    ]
    # Put the books right again (the suite checks the bucket ledger after every test).
    async with transaction(engine) as conn:
        await conn.execute(
            update(journal_lines)
            .where(journal_lines.c.account_id == "processor_cash")
            .values(amount_micros=12_340_000)
        )
        await conn.execute(
            update(balances)
            .where(balances.c.customer_id == person.id)
            .values(stable_micros=balances.c.stable_micros - 5)
        )
    assert verify(database_url)[0] == 0


def _charge_posting(report: dict[str, object]) -> str:
    problems = report["problems"]
    assert isinstance(problems, list)
    return str(problems[1].split()[2])
