"""The schema the migrations build is the one the code declares, on both databases; and 0014,
which makes the invoice ids NOT NULL on SQLite, keeps every invoice row and every reference."""

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.db.engine import create_engine, transaction
from zoopay.db.migrate import alembic_config
from zoopay.db.tables import (
    invoice_lines,
    invoice_payment_attempts,
    invoice_refunds,
    invoices,
    metadata,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
INVOICE_TABLES = (invoices, invoice_lines, invoice_payment_attempts, invoice_refunds)


def _differences(conn: Connection) -> list[Any]:
    return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)


async def test_the_migrations_build_the_schema_the_code_declares(own_database: str) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(own_database), "head")
    engine = create_engine(own_database)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()


def invoice(**values: object) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "customer_kind": "user",
        "customer_id": str(uuid.uuid4()),
        "number": None,
        "status": "paid",
        "description": "Pro plan",
        "tax_rate": "0",
        "subtotal_micros": 20_000_000,
        "tax_micros": 0,
        "total_micros": 20_000_000,
        "amount_paid_micros": 20_000_000,
        "amount_refunded_micros": 5_000_000,
        "attempt_count": 1,
        "created_at": NOW,
        "updated_at": NOW,
        **values,
    }


def line(invoice_id: str, position: int) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "invoice_id": invoice_id,
        "position": position,
        "kind": "plan_fee",
        "description": f"line {position}",
        "amount_micros": 10_000_000,
    }


def attempt(invoice_id: str, number: int = 1) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "invoice_id": invoice_id,
        "attempt": number,
        "idempotency_key": f"invoice-{invoice_id}-attempt-{number}",
        "status": "succeeded",
        "amount_cents": 2_000,
        "processor_customer_id": "cus_1",
        "created_at": NOW,
        "updated_at": NOW,
    }


def refund(invoice_id: str, key: str = "refund-1") -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "invoice_id": invoice_id,
        "idempotency_key": key,
        "amount_cents": 500,
        "credits_micros": 0,
        "status": "succeeded",
        "actor": "staff",
        "created_at": NOW,
        "updated_at": NOW,
    }


async def dump(engine: AsyncEngine) -> dict[str, list[dict[str, object]]]:
    async with engine.connect() as conn:
        return {
            table.name: [
                dict(row)
                for row in (await conn.execute(select(table).order_by(table.c.id))).mappings()
            ]
            for table in INVOICE_TABLES
        }


async def refused(engine: AsyncEngine, statement: Any) -> None:
    with pytest.raises(IntegrityError):
        async with transaction(engine) as conn:
            await conn.execute(statement)


async def at_0013_with(
    own_database: str, rows: dict[Table, list[dict[str, object]]]
) -> AsyncEngine:
    await asyncio.to_thread(command.upgrade, alembic_config(own_database), "0013")
    engine = create_engine(own_database)
    async with transaction(engine) as conn:
        for table, values in rows.items():
            await conn.execute(insert(table), values)
    return engine


async def test_0014_keeps_the_lines_of_an_invoice_nobody_paid(own_database: str) -> None:
    # Rebuilding `invoices` on SQLite drops the old table: with foreign keys on, that deletes
    # the lines of every invoice (ON DELETE CASCADE), silently.
    draft = invoice(status="draft", amount_paid_micros=0, amount_refunded_micros=0)
    engine = await at_0013_with(
        own_database, {invoices: [draft], invoice_lines: [line(str(draft["id"]), 1)]}
    )
    try:
        before = await dump(engine)
        assert [len(before[table.name]) for table in INVOICE_TABLES] == [1, 1, 0, 0]
        await asyncio.to_thread(command.upgrade, alembic_config(own_database), "0014")
        assert await dump(engine) == before
    finally:
        await engine.dispose()


async def test_0014_keeps_every_invoice_row_and_refuses_a_null_id(own_database: str) -> None:
    config = alembic_config(own_database)
    paid, draft = invoice(), invoice(status="draft", amount_paid_micros=0, amount_refunded_micros=0)
    paid_id, draft_id = str(paid["id"]), str(draft["id"])
    engine = await at_0013_with(
        own_database,
        {
            invoices: [paid, draft],
            invoice_lines: [line(paid_id, 1), line(paid_id, 2), line(draft_id, 1)],
            invoice_payment_attempts: [attempt(paid_id)],
            invoice_refunds: [refund(paid_id)],
        },
    )
    try:
        before = await dump(engine)
        assert [len(before[table.name]) for table in INVOICE_TABLES] == [2, 3, 1, 1]
        # With foreign keys on, dropping the old `invoices` is refused here (attempts and refunds
        # refer to it without a cascade).
        await asyncio.to_thread(command.upgrade, config, "0014")
        assert await dump(engine) == before

        new_rows = {
            invoices: invoice(),
            invoice_lines: line(paid_id, 3),
            invoice_payment_attempts: attempt(paid_id, 2),
            invoice_refunds: refund(paid_id, "refund-2"),
        }
        for table, row in new_rows.items():
            await refused(engine, insert(table).values(row | {"id": None}))
        async with transaction(engine) as conn:  # the same rows with their ids are welcome
            for table, row in new_rows.items():
                await conn.execute(insert(table).values(row))
        # What the rebuilt tables must still enforce: the refund bound, the references, the
        # unique keys, and the cascade from an invoice to its lines.
        await refused(
            engine,
            update(invoices)
            .where(invoices.c.id == paid_id)
            .values(amount_refunded_micros=20_000_001),
        )
        await refused(engine, insert(invoice_lines).values(line(str(uuid.uuid4()), 1)))
        await refused(engine, insert(invoice_refunds).values(refund(paid_id, "refund-1")))
        await refused(engine, delete(invoices).where(invoices.c.id == paid_id))
        async with transaction(engine) as conn:
            await conn.execute(delete(invoices).where(invoices.c.id == draft_id))
        after = await dump(engine)
        assert [row["invoice_id"] for row in after["invoice_lines"]] == [paid_id] * 3
        assert [len(after[table.name]) for table in INVOICE_TABLES] == [2, 3, 2, 2]

        await asyncio.to_thread(command.downgrade, config, "0013")
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await dump(engine) == after
    finally:
        await engine.dispose()


@pytest.mark.sqlite_only
async def test_a_reference_left_dangling_stops_the_migration(own_database: str) -> None:
    """With foreign keys off while they run, the migrations check every reference before they
    commit: a database that holds a line of a missing invoice is left as it was, at 0013.
    (PostgreSQL never turns its checks off, so it cannot get there.)"""
    engine = await at_0013_with(own_database, {})
    await engine.dispose()
    path = own_database.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # as a tool that writes with foreign keys off would
        db.execute(
            "INSERT INTO invoice_lines (id, invoice_id, position, kind, description, amount_micros)"
            " VALUES ('l1', 'no-such-invoice', 1, 'usage', 'usage', 1)"
        )
    with pytest.raises(RuntimeError, match=r"references are gone.*invoice_lines"):
        await asyncio.to_thread(command.upgrade, alembic_config(own_database), "head")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0013",)]
        assert db.execute(
            "SELECT \"notnull\" FROM pragma_table_info('invoices') WHERE name = 'id'"
        ).fetchall() == [(0,)]
