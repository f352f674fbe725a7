"""The group commit: concurrent reports share a transaction, and a failure in one never fails
the others."""

import asyncio
import logging
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from zoopay.catalog.service import Catalog
from zoopay.db.engine import reading
from zoopay.db.tables import api_calls
from zoopay.metering.batcher import CallRecorder
from zoopay.metering.schemas import ApiCallReport
from zoopay.metering.service import Reported

SERVICE_TOKEN_ID = str(uuid.uuid4())


def report(user_id: str, clock: Clock) -> ApiCallReport:
    return ApiCallReport.model_validate(
        {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "endpoint": "/file/conversion",
            "method": "POST",
            "started_at": clock.now,
            "completed_at": clock.now,
        }
    )


async def test_a_call_the_database_refuses_fails_alone(
    engine: AsyncEngine,
    catalog: Catalog,
    world: World,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = await world.user()
    good = [report(alice.id, clock) for _ in range(3)]
    # Past what validation lets through: 10^19 micro-dollars overflow a BIGINT on both backends.
    refused = report(alice.id, clock).model_copy(update={"price": Decimal(10**13)})
    recorder = CallRecorder(engine, catalog)
    try:
        with caplog.at_level(logging.WARNING, logger="zoopay"):
            outcomes = await asyncio.gather(
                *(
                    recorder.record(Reported(r, SERVICE_TOKEN_ID), clock.now)
                    for r in [good[0], refused, good[1], good[2]]
                ),
                return_exceptions=True,
            )
    finally:
        await recorder.close()

    assert "group commit of 4 calls failed" in caplog.text  # they were one group
    assert isinstance(outcomes[1], Exception)
    recorded = [o for i, o in enumerate(outcomes) if i != 1]
    assert [(o.status, o.call.id) for o in recorded] == [  # type: ignore[union-attr]
        (201, str(r.id)) for r in good
    ]
    async with reading(engine) as conn:
        stored = set((await conn.execute(select(api_calls.c.id))).scalars())
    assert stored == {str(r.id) for r in good}
