"""db.bulk on the backend under test: asyncpg arrays on PostgreSQL, SQLAlchemy on SQLite."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.db.bulk import insert_all, insert_new, select_where_one_of, update_all
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import users

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
