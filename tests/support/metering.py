"""Reported calls built without HTTP, and a customer at the edge of what a balance holds."""

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person, World
from zoopay.db.engine import transaction
from zoopay.ledger.service import Bucket, Posting, Reason, lock_balance, post
from zoopay.metering.schemas import ApiCallReport
from zoopay.money import MAX_BALANCE_MICROS

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


async def owing_nearly_the_most(world: World, engine: AsyncEngine) -> Person:
    """A user whose total_due is a micro-dollar short of what its column holds."""
    debtor = await world.user()
    async with transaction(engine) as conn:
        balance = await lock_balance(conn, customer=debtor.user.customer)
        deltas = {Bucket.TOTAL_DUE: MAX_BALANCE_MICROS - 1}
        await post(
            conn,
            balance=balance,
            deltas=deltas,
            posting=Posting(Reason.STAFF_CHANGE, "test"),
            now=world.clock.now,
        )
    return debtor
