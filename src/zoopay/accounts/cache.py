"""Token lookups kept in memory for a fraction of a second, so that a busy token costs one
database round trip per half second per process instead of one per request.

What a token stands for can change (revoked, its user deleted or made staff or not), and
another process may change it: an entry is trusted for `TTL_SECONDS` from the moment its lookup
began, so any change committed before a lookup is seen by every process within that bound.
Failed lookups are not cached (a random token must not grow memory, and a new token works at
once); they read without taking SQLite's write lock, so they never queue behind writers.
"""

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.accounts.service import Principal, authenticate
from zoopay.accounts.tokens import token_hash
from zoopay.db.engine import reading

# Well under the 1 s within which a revocation must reach every process (README).
TTL_SECONDS = 0.5


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    expires: float


class TokenCache:
    def __init__(
        self,
        engine: AsyncEngine,
        max_entries: int = 10_000,
        *,
        ttl_seconds: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def principal(self, token: str) -> Principal | None:
        key = token_hash(token)
        started = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > started:
            self._entries.move_to_end(key)
            return entry.principal
        # A read outside any transaction: on SQLite it never waits for the write lock.
        async with reading(self._engine) as conn:
            principal = await authenticate(conn, token=token)
        if principal is None:
            self._entries.pop(key, None)
        else:
            self._remember(key, _Entry(principal, started + self._ttl))
        return principal

    def _remember(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
