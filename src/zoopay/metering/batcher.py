"""Group commit: concurrent single reports share one transaction.

Each request waits for the commit that makes its call durable, so a 201 still means
recorded and debited; but N concurrent requests cost one transaction, not N. The wait is
bounded twice: a full queue refuses at once, and a commit that does not come in time (a hung
database) is a 503; either way the report is safe to send again (its id makes it idempotent).
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.catalog.service import Catalog
from zoopay.db.engine import is_unavailable, transaction
from zoopay.errors import ServiceUnavailable, ZoopayError
from zoopay.metering.service import Outcome, Reported, record_calls

log = logging.getLogger("zoopay")


async def commit_calls(
    engine: AsyncEngine, catalog: Catalog, reported: Sequence[Reported], now: datetime
) -> list[Outcome]:
    """Record calls in one transaction; if it fails, one transaction each, so that whatever
    failed (a deadlock, one call the database refuses, a balance past its limit) fails only
    the calls it concerns. A database that is unavailable fails them all: the error is raised."""
    try:
        return await _commit(engine, catalog, reported, now)
    except Exception as exc:
        if is_unavailable(exc):
            raise
        if len(reported) == 1:
            return [_failed(exc)]
        log.warning(
            "group commit of %d calls failed; retrying one by one", len(reported), exc_info=True
        )
    outcomes = []
    for item in reported:
        try:
            [outcome] = await _commit(engine, catalog, [item], now)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            outcome = _failed(exc)
        outcomes.append(outcome)
    return outcomes


async def _commit(
    engine: AsyncEngine, catalog: Catalog, reported: Sequence[Reported], now: datetime
) -> list[Outcome]:
    async with transaction(engine) as conn:
        return await record_calls(conn, catalog=catalog, reported=reported, now=now)


def _failed(exc: Exception) -> Outcome:
    if isinstance(exc, ZoopayError):
        return Outcome(exc.status_code, error=exc)
    log.error("recording a call failed", exc_info=exc)
    return Outcome(500, error=ZoopayError("internal error recording this call"))


@dataclass
class _Pending:
    reported: Reported
    now: datetime
    outcome: asyncio.Future[Outcome] = field(default_factory=lambda: _future())


def _future() -> asyncio.Future[Outcome]:
    future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    # A request that stopped waiting (503) leaves its outcome unread: that is not an error.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


class CallRecorder:
    def __init__(
        self,
        engine: AsyncEngine,
        catalog: Catalog,
        max_batch: int = 500,
        writers: int = 2,
        *,
        queue_limit: int = 2000,
        wait_seconds: float = 5.0,
    ) -> None:
        self._engine = engine
        self._catalog = catalog
        self._max_batch = max_batch
        self._writers = writers
        self._wait_seconds = wait_seconds
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_limit)
        self._tasks: list[asyncio.Task[None]] = []

    async def record(self, reported: Reported, now: datetime) -> Outcome:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._write_forever()) for _ in range(self._writers)]
        pending = _Pending(reported, now)
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise ServiceUnavailable(
                "too many reports are waiting to be recorded: send this one again shortly"
            ) from None
        try:
            # Shielded: the call is still recorded if it is already on its way to the database.
            return await asyncio.wait_for(asyncio.shield(pending.outcome), self._wait_seconds)
        except TimeoutError:
            raise ServiceUnavailable(
                "the database did not record this report in time: send it again shortly"
            ) from None

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
        now = max(pending.now for pending in batch)
        try:
            outcomes = await commit_calls(
                self._engine, self._catalog, [p.reported for p in batch], now
            )
        except Exception as exc:  # the database is unavailable: each request answers 503
            for pending in batch:
                _settle(pending, exc)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            _settle(pending, outcome)


def _settle(pending: _Pending, result: Outcome | Exception) -> None:
    if pending.outcome.done():  # the client went away and cancelled its wait
        return
    if isinstance(result, Exception):
        pending.outcome.set_exception(result)
    else:
        pending.outcome.set_result(result)
