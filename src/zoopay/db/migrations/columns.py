"""The column shapes the migrations repeat: one definition each of an id, a moment, an amount.

A migration that has run is never run again on that database, so what a helper here makes must
never change (a new database would differ from an old one): a new shape is a new helper.
"""

import sqlalchemy as sa


def uuid(
    name: str = "id",
    *args: sa.ForeignKey,
    primary_key: bool = False,
    nullable: bool | None = None,
) -> sa.Column[str]:
    """A UUID (36 characters): the id of a row, or of the row it refers to. Nullable unless
    it is (part of) the primary key, as a Column is."""
    if nullable is None:
        nullable = not primary_key
    return sa.Column(name, sa.String(36), *args, primary_key=primary_key, nullable=nullable)


def text(name: str, length: int, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=nullable)


def at(name: str, nullable: bool = False) -> sa.Column[object]:
    """A moment, with its time zone."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def micros(name: str, nullable: bool = False) -> sa.Column[int]:
    """An amount in integer micro-dollars."""
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def serial() -> sa.Column[int]:
    """An id the database counts up (SQLite's rowid is an INTEGER)."""
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def stamps() -> tuple[sa.Column[object], sa.Column[object]]:
    """`created_at`, `updated_at`: when a row was made and last changed."""
    return at("created_at"), at("updated_at")


def customer(primary_key: bool = False) -> tuple[sa.Column[str], sa.Column[str]]:
    """Whose row it is: `customer_kind` (user or org) and `customer_id`."""
    return (
        text("customer_kind", 8, nullable=False),
        uuid("customer_id", primary_key=primary_key, nullable=False),
    )
