"""db.bulk on the backend under test: asyncpg arrays on PostgreSQL, SQLAlchemy on SQLite."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.db.bulk import (
    add_to_all,
    insert_all,
    insert_new,
    reserve_ids,
    select_where_one_of,
    update_all,
)
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import (
    billing_closes,
    journal_accounts,
    journal_postings,
    ledger_entries,
    users,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def user_row(n: int, name: str | None = None) -> dict[str, object]:
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "email": f"user{n}@example.com",
        "name": name,
        "is_staff": False,
        "created_at": NOW,
        "updated_at": NOW,
    }


async def stored_users(engine: AsyncEngine) -> dict[str, tuple[str, str | None, datetime]]:
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(users.c.id, users.c.email, users.c.name, users.c.updated_at)
        )
        return {row.id: (row.email, row.name, row.updated_at) for row in rows}


async def test_insert_new_inserts_and_returns_only_new_keys(engine: AsyncEngine) -> None:
    async with transaction(engine) as conn:
        assert await insert_new(conn, users, [user_row(1, "first")]) == {user_row(1)["id"]}
    again = [user_row(2), user_row(1, "changed"), user_row(3)]
    async with transaction(engine) as conn:
        new = await insert_new(conn, users, again)
    assert new == {user_row(2)["id"], user_row(3)["id"]}
    stored = await stored_users(engine)
    assert len(stored) == 3
    assert stored[str(user_row(1)["id"])][1] == "first"  # the existing row is untouched


async def test_insert_new_of_nothing(engine: AsyncEngine) -> None:
    async with transaction(engine) as conn:
        assert await insert_new(conn, users, []) == set()
    assert await stored_users(engine) == {}


async def test_insert_all_keeps_values_and_nulls(engine: AsyncEngine) -> None:
    rows = [user_row(n, name=None if n % 2 else f"n{n}") for n in range(1, 251)]
    async with transaction(engine) as conn:
        await insert_all(conn, users, rows)
    stored = await stored_users(engine)
    assert len(stored) == 250
    assert stored[str(rows[0]["id"])] == ("user1@example.com", None, NOW)
    assert stored[str(rows[1]["id"])] == ("user2@example.com", "n2", NOW)


async def test_update_all_changes_only_the_named_rows_and_columns(engine: AsyncEngine) -> None:
    async with transaction(engine) as conn:
        await insert_all(conn, users, [user_row(n, "old") for n in (1, 2, 3)])
    later = NOW + timedelta(days=1)
    changes = [
        {"id": user_row(1)["id"], "name": "one", "updated_at": later},
        {"id": user_row(3)["id"], "name": None, "updated_at": later},
    ]
    async with transaction(engine) as conn:
        await update_all(conn, users, changes)
    stored = await stored_users(engine)
    assert stored[str(user_row(1)["id"])] == ("user1@example.com", "one", later)
    assert stored[str(user_row(2)["id"])] == ("user2@example.com", "old", NOW)
    assert stored[str(user_row(3)["id"])] == ("user3@example.com", None, later)


QUERY = select(users.c.id, users.c.email).order_by(users.c.email)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ([3, 1], ["user1@example.com", "user3@example.com"]),
        ([2], ["user2@example.com"]),
        ([9], []),
        ([], []),
    ],
)
async def test_select_where_one_of(
    engine: AsyncEngine, wanted: list[int], expected: list[str]
) -> None:
    async with transaction(engine) as conn:
        await insert_all(conn, users, [user_row(n) for n in (1, 2, 3)])
    async with reading(engine) as conn:
        ids = [str(user_row(n)["id"]) for n in wanted]
        rows = await select_where_one_of(conn, QUERY, users.c.id, ids)
    assert [row["email"] for row in rows] == expected


async def test_bulk_statements_roll_back_with_their_transaction(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError):
        async with transaction(engine) as conn:
            await insert_all(conn, users, [user_row(1)])
            assert await insert_new(conn, users, [user_row(2)]) == {user_row(2)["id"]}
            raise RuntimeError("the unit of work fails")
    assert await stored_users(engine) == {}


async def test_add_to_all_adds_and_update_all_takes_a_key_of_several_columns(
    engine: AsyncEngine,
) -> None:
    accounts = [
        {
            "id": name,
            "kind": "revenue",
            "customer_id": None,
            "balance_micros": 10,
            "updated_at": NOW,
        }
        for name in ("a", "b", "c")
    ]
    later = NOW + timedelta(days=1)
    async with transaction(engine) as conn:
        await insert_all(conn, journal_accounts, accounts)
        await add_to_all(
            conn,
            journal_accounts,
            [
                {"id": "a", "balance_micros": 5, "updated_at": later},
                {"id": "c", "balance_micros": -15, "updated_at": later},
            ],
            add="balance_micros",
        )
        first, second = await reserve_ids(conn, journal_postings, 2), []
        await insert_all(
            conn,
            journal_postings,
            [
                {
                    "id": i,
                    "kind": "charge",
                    "invoice_id": None,
                    "processor_ref": None,
                    "memo": "m",
                    "created_at": NOW,
                }
                for i in first
            ],
        )
        second = await reserve_ids(conn, journal_postings, 1)
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(journal_accounts.c.id, journal_accounts.c.balance_micros).order_by("id")
        )
        assert [tuple(row) for row in rows] == [("a", 15), ("b", 10), ("c", -5)]
    assert len(set(first)) == 2 and second[0] > max(first)

    closes = [
        {
            "customer_id": f"c{n}",
            "period_end": NOW + timedelta(days=d),
            "customer_kind": "user",
            "period_start": NOW,
            "tier": "free",
            "next_tier": "free",
            "seats": 1,
            "fee_micros": 0,
            "usage_micros": 0,
            "status": "claimed",
            "invoice_id": None,
            "created_at": NOW,
            "updated_at": NOW,
        }
        for n in (1, 2)
        for d in (1, 2)
    ]
    async with transaction(engine) as conn:
        await insert_all(conn, billing_closes, closes)
        mark = {"customer_id": "c1", "period_end": NOW + timedelta(days=2), "status": "invoiced"}
        await update_all(conn, billing_closes, [mark], key=("customer_id", "period_end"))
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(billing_closes.c.customer_id, billing_closes.c.status).order_by(
                billing_closes.c.customer_id, billing_closes.c.period_end
            )
        )
        assert [tuple(row) for row in rows] == [
            ("c1", "claimed"),
            ("c1", "invoiced"),
            ("c2", "claimed"),
            ("c2", "claimed"),
        ]


async def test_a_value_every_row_shares_is_set_on_each(engine: AsyncEngine) -> None:
    # On PostgreSQL such a column travels as one value, not an array (db.bulk._parameters):
    # the statement must still set it, and add it, on every row it names, and only there.
    async with transaction(engine) as conn:
        await insert_all(conn, users, [user_row(n, "old") for n in (1, 2, 3)])
        await insert_all(conn, journal_accounts, [account(name, 10) for name in ("a", "b", "c")])
    later = NOW + timedelta(days=1)
    async with transaction(engine) as conn:
        await update_all(
            conn,
            users,
            [{"id": user_row(n)["id"], "name": "same", "updated_at": later} for n in (1, 3)],
        )
        await add_to_all(
            conn,
            journal_accounts,
            [{"id": name, "balance_micros": 7, "updated_at": later} for name in ("a", "c")],
            add="balance_micros",
        )
    stored = await stored_users(engine)
    assert [stored[str(user_row(n)["id"])][1:] for n in (1, 2, 3)] == [
        ("same", later),
        ("old", NOW),
        ("same", later),
    ]
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(journal_accounts.c.id, journal_accounts.c.balance_micros).order_by("id")
        )
        assert [tuple(row) for row in rows] == [("a", 17), ("b", 10), ("c", 17)]


@pytest.mark.parametrize("count", [2, 150])
async def test_rows_alike_in_every_column_are_each_inserted(
    engine: AsyncEngine, count: int
) -> None:
    # Every column shared (the id comes from the table): one of them still travels as an
    # array, which is how the statement knows how many rows there are; 150 go by COPY.
    entry = {
        "customer_id": "c1",
        "bucket": "stable",
        "delta_micros": 5,
        "balance_after_micros": 5,
        "actor": "system",
        "reason": "grant",
        "reference": None,
        "note": None,
        "created_at": NOW,
    }
    async with transaction(engine) as conn:
        await insert_all(conn, ledger_entries, [entry] * count)
    async with reading(engine) as conn:
        rows = (await conn.execute(select(ledger_entries))).mappings().all()
    assert len(rows) == count
    assert {(row["customer_id"], row["delta_micros"], row["created_at"]) for row in rows} == {
        ("c1", 5, NOW)
    }


def account(name: str, balance_micros: int) -> dict[str, object]:
    return {
        "id": name,
        "kind": "revenue",
        "customer_id": None,
        "balance_micros": balance_micros,
        "updated_at": NOW,
    }
