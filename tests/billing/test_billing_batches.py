"""`billing run`'s set-based steps: a chunk invoiced by invoicing.bulk makes exactly what
`issue_invoice` makes, a chunk charged in one batch gives each invoice its own outcome, and a
run that fails between chunks is finished by the next without billing anyone twice."""

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.conftest import START, Clock, Person, World
from tests.support.billing import (
    ENDED,
    TERMS,
    add_card,
    bill,
    books_are_clean,
    embedded,
    without_cards,
)
from tests.support.concurrency import all_finished
from zoopay.billing import run as billing_run
from zoopay.billing.run import BillingTerms
from zoopay.catalog.service import Catalog
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import (
    billing_closes,
    invoice_lines,
    invoice_payment_attempts,
    invoices,
    journal_accounts,
    journal_lines,
    journal_postings,
    ledger_entries,
    processor_charges,
)
from zoopay.invoicing.bulk import NewInvoice, issue_invoices, number_invoices, write_invoices
from zoopay.invoicing.service import (
    credits_line,
    issue_invoice,
    next_invoice_number,
    plan_fee_line,
    usage_line,
)
from zoopay.journal.service import Account, AccountKind, account_balance
from zoopay.ledger.service import Bucket, Posting, Reason, lock_balance, post
from zoopay.payments.service import Address, BillingDetails, Contact, save_billing_info

DE = {"DE": Decimal("0.19")}


class _RolledBack(Exception):
    """Raised to roll a transaction back after its rows were read."""


async def _owe(engine: AsyncEngine, person: Person, micros: int) -> None:
    async with transaction(engine) as conn:
        balance = await lock_balance(conn, customer=person.user.customer)
        deltas = {Bucket.MONTHLY: -balance.monthly_micros, Bucket.TOTAL_DUE: micros}
        posting = Posting(Reason.API_CALL, "test")
        await post(conn, balance=balance, deltas=deltas, posting=posting, now=START)


async def _written(conn: AsyncConnection) -> dict[str, Any]:
    """Everything invoicing wrote, without the ids that are new each time (by number)."""
    numbers = {
        row["id"]: row["number"] for row in (await conn.execute(select(invoices))).mappings()
    }

    def plain(rows: Sequence[Any], drop: tuple[str, ...]) -> list[dict[str, Any]]:
        kept = [{k: v for k, v in dict(row).items() if k not in drop} for row in rows]
        for row in kept:
            for name in ("invoice_id", "reference"):
                if name in row:
                    row[name] = numbers.get(row[name], row[name])
        return sorted(kept, key=repr)

    posted = (
        select(journal_postings, journal_lines.c.account_id, journal_lines.c.amount_micros)
        .join(journal_lines, journal_lines.c.posting_id == journal_postings.c.id)
        .order_by(journal_postings.c.id)
    )
    entries = select(ledger_entries)
    return {
        "invoices": plain((await conn.execute(select(invoices))).mappings().all(), ("id",)),
        "lines": plain((await conn.execute(select(invoice_lines))).mappings().all(), ("id",)),
        "journal": plain((await conn.execute(posted)).mappings().all(), ("id",)),
        "accounts": plain((await conn.execute(select(journal_accounts))).mappings().all(), ()),
        "entries": plain((await conn.execute(entries)).mappings().all(), ("id",)),
    }


async def test_a_chunk_invoiced_in_bulk_is_exactly_what_issue_invoice_makes(
    engine: AsyncEngine, world: World, clock: Clock
) -> None:
    people = [await world.user() for _ in range(4)]
    for person in people:
        await _owe(engine, person, 50_000_000)
    customers = [person.user.customer for person in people]
    fee = plan_fee_line(
        tier_name="Pro", period="from 2026-02-01", amount_micros=49_000_000, reference="fee:x"
    )
    drafts = [
        # A fee and usage, taxed in Germany (tax, then rounding to whole cents).
        NewInvoice(
            customers[0],
            [fee, usage_line(period="January", amount_micros=10_004_200, reference="u:0")],
            "zoopay, period ending 2026-02-01",
            contact=Contact("a@example.com", "A GmbH", "de"),
        ),
        # Usage only, untaxed (no rate for the country).
        NewInvoice(customers[1], [usage_line(period="January", amount_micros=4_250_000)], "u"),
        # Less than half a cent: an invoice of 0, paid at once, its usage settled.
        NewInvoice(customers[2], [usage_line(period="January", amount_micros=4_000)], "tiny"),
        # Credits: delivered when paid, not before.
        NewInvoice(customers[3], [credits_line(amount_micros=25_000_000)], "credits"),
        # The same customer twice in one chunk.
        NewInvoice(customers[0], [usage_line(period="early", amount_micros=1_000_000)], "e"),
    ]

    # One at a time, as before: read, then rolled back (the numbers are given back).
    with pytest.raises(_RolledBack):
        async with transaction(engine) as conn:
            for draft in drafts:
                await issue_invoice(
                    conn,
                    customer=draft.customer,
                    lines=draft.lines,
                    description=draft.description,
                    tax_rates=DE,
                    prefix="ZP",
                    now=clock.now,
                    contact=draft.contact,
                )
            one_by_one = await _written(conn)
            raise _RolledBack
    async with transaction(engine) as conn:
        issued = await issue_invoices(conn, drafts=drafts, tax_rates=DE, prefix="ZP", now=clock.now)
    async with reading(engine) as conn:
        in_bulk = await _written(conn)

    assert in_bulk == one_by_one
    assert [invoice.number for invoice in issued] == [f"ZP-00000{n}" for n in range(1, 6)]
    assert [invoice.status for invoice in issued] == ["open", "open", "paid", "open", "open"]
    assert (issued[0].tax_micros, issued[0].total_micros) == (11_210_798, 70_210_000)
    assert [line.kind for line in issued[0].lines] == ["plan_fee", "usage", "rounding"]
    await books_are_clean(engine)


def _cards(engine: AsyncEngine, clock: Clock) -> Any:
    return embedded(engine, clock)


async def _rows(engine: AsyncEngine, table: Any) -> list[dict[str, Any]]:
    async with reading(engine) as conn:
        return [dict(row) for row in (await conn.execute(select(table))).mappings()]


async def test_a_batch_with_mixed_cards_gives_each_invoice_its_own_outcome(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    processor = _cards(engine, clock)
    visa, fails, authenticates, no_card, never_seen = [await world.user() for _ in range(5)]
    await add_card(engine, processor, visa.user.customer, START)
    await add_card(engine, processor, fails.user.customer, START, "pm_card_chargeCustomerFail")
    await add_card(
        engine, processor, authenticates.user.customer, START, "pm_card_authenticationRequired"
    )
    # A processor customer whose only card was removed.
    await add_card(engine, processor, no_card.user.customer, START)
    for person in (visa, fails, authenticates, no_card, never_seen):
        await _owe(engine, person, 2_000_000)
    await without_cards(engine, START, no_card)

    clock.now = ENDED
    summary = await bill(engine, catalog, processor, ENDED)
    assert (summary.invoiced, summary.charged, summary.paid, summary.failed) == (5, 5, 1, 4)

    by_customer = {row["customer_id"]: row for row in await _rows(engine, invoices)}
    attempts = {row["invoice_id"]: row for row in await _rows(engine, invoice_payment_attempts)}

    def outcome(person: Person) -> tuple[Any, ...]:
        invoice = by_customer[person.id]
        attempt = attempts[invoice["id"]]
        return (
            invoice["status"],
            invoice["attempt_count"],
            attempt["status"],
            attempt["failure_code"],
        )

    assert outcome(visa) == ("paid", 1, "succeeded", None)
    assert outcome(fails) == ("open", 1, "failed", "card_declined")
    assert outcome(authenticates) == ("open", 1, "requires_action", "authentication_required")
    assert outcome(no_card) == ("open", 1, "failed", "no_payment_method")
    # The customer the processor had never seen is made there in the batch, then refused.
    assert outcome(never_seen) == ("open", 1, "failed", "no_payment_method")
    charges = await _rows(engine, processor_charges)
    assert sorted((c["status"], c["amount_cents"]) for c in charges) == [
        ("failed", 200),
        ("requires_action", 200),
        ("succeeded", 200),
    ]
    paid = by_customer[visa.id]
    assert paid["charge_id"] == attempts[paid["id"]]["charge_id"] is not None


async def _invoice_count(engine: AsyncEngine) -> int:
    async with reading(engine) as conn:
        return int((await conn.execute(select(func.count()).select_from(invoices))).scalar_one())


@pytest.mark.parametrize("failing_step", ["invoice_chunk", "charge_invoices"])
async def test_a_run_that_fails_between_chunks_is_finished_by_the_next_billing_nobody_twice(
    engine: AsyncEngine,
    catalog: Catalog,
    world: World,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    failing_step: str,
) -> None:
    processor = _cards(engine, clock)
    people = [await world.user() for _ in range(7)]
    for n, person in enumerate(people):
        await add_card(engine, processor, person.user.customer, START)
        await _owe(engine, person, 1_000_000 * (n + 1))
    monkeypatch.setattr(billing_run.invoice_closes, "__kwdefaults__", {"chunk": 3})
    monkeypatch.setattr(billing_run._charge_all, "__kwdefaults__", {"chunk": 3})
    real = getattr(billing_run, failing_step)
    calls = 0

    async def second_chunk_dies(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the process died here")
        return await real(*args, **kwargs)

    monkeypatch.setattr(billing_run, failing_step, second_chunk_dies)
    clock.now = ENDED
    with pytest.raises(RuntimeError):
        await bill(engine, catalog, processor, ENDED)
    done_before = await _invoice_count(engine)
    # Invoicing stopped after the chunks under way (two at once on PostgreSQL), or charging did.
    assert 3 <= done_before <= 7

    monkeypatch.setattr(billing_run, failing_step, real)
    rerun = await bill(engine, catalog, processor, ENDED)
    assert rerun.closed == 0
    assert rerun.invoiced == 7 - done_before
    again = await bill(engine, catalog, processor, ENDED + timedelta(hours=1))
    assert (again.invoiced, again.charged) == (0, 0)

    issued = await _rows(engine, invoices)
    assert sorted(i["number"] for i in issued) == [f"ZP-00000{n}" for n in range(1, 8)]
    assert sorted(i["customer_id"] for i in issued) == sorted(p.id for p in people)
    assert {i["status"] for i in issued} == {"paid"}
    charges = await _rows(engine, processor_charges)
    assert sorted(c["amount_cents"] for c in charges) == [100 * n for n in range(1, 8)]
    closes = await _rows(engine, billing_closes)
    assert sorted(c["customer_id"] for c in closes) == sorted(p.id for p in people)
    assert {c["status"] for c in closes} == {"invoiced"}


async def test_period_close_invoices_are_taxed_by_the_billing_country(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    processor = _cards(engine, clock)
    german, unknown = await world.user(), await world.user()
    for person in (german, unknown):
        await add_card(engine, processor, person.user.customer, START)
        await _owe(engine, person, 10_000_000)
    details = BillingDetails(name="Muster GmbH", address=Address(country="DE", zip="10115"))
    async with transaction(engine) as conn:
        await save_billing_info(
            conn, customer=german.user.customer, details=details, creating=True, now=START
        )
    clock.now = ENDED
    terms = BillingTerms(dunning_days=TERMS.dunning_days, tax_rates=DE, invoice_prefix="ZP")
    summary = await bill(engine, catalog, processor, ENDED, terms)
    assert summary.paid == 2
    by_customer = {row["customer_id"]: row for row in await _rows(engine, invoices)}
    taxed = by_customer[german.id]
    assert (taxed["country"], taxed["tax_rate"], taxed["tax_micros"]) == ("DE", "0.19", 1_900_000)
    assert (taxed["total_micros"], taxed["customer_name"]) == (11_900_000, "Muster GmbH")
    assert taxed["customer_email"] == german.email
    plain = by_customer[unknown.id]
    assert (plain["country"], plain["tax_micros"], plain["total_micros"]) == (None, 0, 10_000_000)
    charges = await _rows(engine, processor_charges)
    assert sorted(c["amount_cents"] for c in charges) == [1000, 1190]


def _usage(person: Person, micros: int) -> NewInvoice:
    return NewInvoice(
        person.user.customer, [usage_line(period="January", amount_micros=micros)], "usage"
    )


async def _numbers(engine: AsyncEngine) -> dict[str, str]:
    """Each invoice's customer by its number."""
    rows = await _rows(engine, invoices)
    return {row["number"]: row["customer_id"] for row in rows}


@pytest.mark.postgres_only
async def test_a_chunk_takes_the_counter_and_the_shared_accounts_only_at_its_end(
    engine: AsyncEngine, world: World, clock: Clock
) -> None:
    """Two chunks of a billing run at once: while one writes its invoices, lines and postings,
    the other issues and commits without waiting for it (a lock wait would exceed the
    lock_timeout and fail it); the first then numbers its own after the second's, no gap."""
    first, a1, a2, b1, b2 = [await world.user() for _ in range(5)]
    # The shared accounts exist from the first invoice ever on.
    async with transaction(engine) as conn:
        await issue_invoices(
            conn, drafts=[_usage(first, 1_000_000)], tax_rates={}, prefix="ZP", now=clock.now
        )
    async with transaction(engine) as chunk_a:
        written = await write_invoices(
            chunk_a,
            drafts=[_usage(a1, 2_000_000), _usage(a2, 3_000_000)],
            tax_rates={},
            now=clock.now,
        )
        async with transaction(engine) as chunk_b:
            await chunk_b.execute(text("SET LOCAL lock_timeout = '5s'"))
            issued_b = await issue_invoices(
                chunk_b,
                drafts=[_usage(b1, 4_000_000), _usage(b2, 5_000_000)],
                tax_rates={},
                prefix="ZP",
                now=clock.now,
            )
        issued_a = await number_invoices(chunk_a, written, prefix="ZP", now=clock.now)

    assert [i.number for i in issued_b] == ["ZP-000002", "ZP-000003"]
    assert [i.number for i in issued_a] == ["ZP-000004", "ZP-000005"]
    assert await _numbers(engine) == {
        "ZP-000001": first.id,
        "ZP-000002": b1.id,
        "ZP-000003": b2.id,
        "ZP-000004": a1.id,
        "ZP-000005": a2.id,
    }
    async with reading(engine) as conn:
        revenue = await account_balance(conn, Account(AccountKind.REVENUE))
    assert revenue == -15_000_000
    await books_are_clean(engine)


async def _until_one_waits_on_a_lock(engine: AsyncEngine) -> None:
    """Returns once a session of this database waits on a lock (10 s at most)."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        async with reading(engine) as conn:
            if (await conn.execute(waiting)).scalar_one():
                return
        await asyncio.sleep(0.05)
    raise AssertionError("no session came to wait on a lock")


@pytest.mark.postgres_only
@pytest.mark.parametrize("way", ["single", "bulk"])
async def test_an_invoice_of_0_is_paid_before_it_takes_the_counter(
    engine: AsyncEngine, world: World, clock: Clock, way: str
) -> None:
    """An invoice that rounds to 0 (usage under half a cent) is paid as it is issued, which
    locks its customer's balance: while another transaction holds that balance, the invoice
    waits for it without holding the counter, so other invoices are numbered meanwhile (a
    wait on the counter would exceed the lock_timeout and fail it)."""
    tiny = await world.user()
    tiny_usage = _usage(tiny, 4_000)

    async def issue_tiny() -> str | None:
        async with transaction(engine) as conn:
            if way == "bulk":
                [made] = await issue_invoices(
                    conn, drafts=[tiny_usage], tax_rates={}, prefix="ZP", now=clock.now
                )
            else:
                made = await issue_invoice(
                    conn,
                    customer=tiny.user.customer,
                    lines=list(tiny_usage.lines),
                    description="usage",
                    tax_rates={},
                    prefix="ZP",
                    now=clock.now,
                )
            return made.number

    async with transaction(engine) as holder:
        await lock_balance(holder, customer=tiny.user.customer)
        tiny_numbered = asyncio.create_task(issue_tiny())
        await _until_one_waits_on_a_lock(engine)
        async with transaction(engine) as meanwhile:
            await meanwhile.execute(text("SET LOCAL lock_timeout = '5s'"))
            taken = await next_invoice_number(meanwhile, prefix="ZP")
    assert taken == "ZP-000001"
    assert await tiny_numbered == "ZP-000002"
    [row] = await _rows(engine, invoices)
    assert (row["customer_id"], row["status"], row["total_micros"]) == (tiny.id, "paid", 0)
    assert row["number"] == "ZP-000002"
    await books_are_clean(engine)


async def test_chunks_and_single_invoices_issued_at_once_never_deadlock_nor_skip_a_number(
    engine: AsyncEngine, world: World, clock: Clock
) -> None:
    """Bulk chunks (customer accounts, then the shared ones, then the counter) beside single
    invoices (`issue_invoice`, the same order) for the same and other customers, all at once:
    every one commits, numbered 1 to N without a gap, and the books balance."""
    people = [await world.user() for _ in range(6)]

    async def chunk(part: Sequence[Person]) -> None:
        async with transaction(engine) as conn:
            drafts = [_usage(person, 1_000_000) for person in part]
            await issue_invoices(conn, drafts=drafts, tax_rates=DE, prefix="ZP", now=clock.now)

    async def single(person: Person) -> None:
        async with transaction(engine) as conn:
            await issue_invoice(
                conn,
                customer=person.user.customer,
                lines=[credits_line(amount_micros=2_000_000)],
                description="credits",
                tax_rates=DE,
                prefix="ZP",
                now=clock.now,
            )

    await all_finished(
        *(chunk(people[n : n + 3]) for n in (0, 3, 0, 3)), *(single(p) for p in people)
    )
    numbers = await _numbers(engine)
    assert sorted(numbers) == [f"ZP-{n:06d}" for n in range(1, 19)]
    assert sorted(numbers.values()) == sorted(p.id for p in people for _ in range(3))
    await books_are_clean(engine)
