"""Group commit: concurrent single reports share one transaction.

Each request waits for the commit that makes its call durable, so a 201 still means
recorded and debited; but N concurrent requests cost one transaction, not N.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.catalog.service import Catalog
from zoopay.db.engine import transaction
from zoopay.metering.service import Outcome, Reported, record_calls

log = logging.getLogger("zoopay")


@dataclass
class _Pending:
    reported: Reported
    now: datetime
    outcome: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CallRecorder:
    def __init__(
        self, engine: AsyncEngine, catalog: Catalog, max_batch: int = 500, writers: int = 2
    ) -> None:
        self._engine = engine
        self._catalog = catalog
        self._max_batch = max_batch
        self._writers = writers
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def record(self, reported: Reported, now: datetime) -> Outcome:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._write_forever()) for _ in range(self._writers)]
        pending = _Pending(reported, now)
        self._queue.put_nowait(pending)
        return await pending.outcome

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            await self._write_alone(batch[0])
            return
        try:
            outcomes = await self._commit(batch)
        except Exception:
            # Whatever failed (a deadlock, a lost connection, one call the database refuses)
            # must not fail the others: one at a time, each answering for itself.
            log.warning(
                "group commit of %d calls failed; retrying one by one", len(batch), exc_info=True
            )
            for pending in batch:
                await self._write_alone(pending)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            _settle(pending, outcome)

    async def _write_alone(self, pending: _Pending) -> None:
        try:
            [outcome] = await self._commit([pending])
        except Exception as exc:  # surfaces as the request's own 500
            _settle(pending, exc)
            return
        _settle(pending, outcome)

    async def _commit(self, batch: list[_Pending]) -> list[Outcome]:
        now = max(pending.now for pending in batch)
        async with transaction(self._engine) as conn:
            return await record_calls(conn, self._catalog, [p.reported for p in batch], now)


def _settle(pending: _Pending, result: Outcome | Exception) -> None:
    if pending.outcome.done():  # the client went away and cancelled its wait
        return
    if isinstance(result, Exception):
        pending.outcome.set_exception(result)
    else:
        pending.outcome.set_result(result)
