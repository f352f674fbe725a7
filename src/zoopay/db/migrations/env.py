"""Alembic environment: runs migrations on zoopay's async engine."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from zoopay.db.engine import Timeouts, create_engine
from zoopay.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str) -> None:
    # A migration may rewrite a large table: no request-sized statement timeout.
    engine = create_engine(url, timeouts=Timeouts(statement=3600))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


asyncio.run(_run_online(context.config.get_main_option("sqlalchemy.url") or ""))
