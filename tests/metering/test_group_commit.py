"""The group commit: concurrent reports share a transaction, and a failure in one never fails
the others."""

import asyncio
import logging
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.support.metering import SERVICE_TOKEN_ID, owing_nearly_the_most, report
from zoopay.catalog.service import Catalog
from zoopay.db.engine import reading
from zoopay.db.tables import api_calls
from zoopay.metering.batcher import CallRecorder
from zoopay.metering.service import Reported


async def test_a_call_that_fails_in_the_commit_fails_alone(
    engine: AsyncEngine,
    catalog: Catalog,
    world: World,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = await world.user()
    good = [report(alice.id, clock) for _ in range(3)]
    # Valid on its own, but its debit would take the debtor's total_due past its BIGINT: the
    # group's transaction fails when it is debited.
    debtor = await owing_nearly_the_most(world, engine)
    refused = report(debtor.id, clock).model_copy(update={"price": Decimal(1000)})
    recorder = CallRecorder(engine, catalog)
    try:
        with caplog.at_level(logging.WARNING, logger="zoopay"):
            outcomes = await asyncio.gather(
                *(
                    recorder.record(Reported(r, SERVICE_TOKEN_ID), clock.now)
                    for r in [good[0], refused, good[1], good[2]]
                ),
            )
    finally:
        await recorder.close()

    assert "group commit of 4 calls failed" in caplog.text  # they were one group
    assert outcomes[1].status == 400
    assert "9223372036854.775807" in str(outcomes[1].error)
    recorded = [o for i, o in enumerate(outcomes) if i != 1]
    assert [(o.status, o.call.id) for o in recorded] == [  # type: ignore[union-attr]
        (201, str(r.id)) for r in good
    ]
    async with reading(engine) as conn:
        stored = set((await conn.execute(select(api_calls.c.id))).scalars())
    assert stored == {str(r.id) for r in good}
