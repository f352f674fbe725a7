"""Token lookups kept in memory, so a request needs no database round trip to authenticate.

Exact, not eventually consistent: a token's owner never changes and zoopay has no way to
revoke or re-role a token yet. Whoever adds one must make it invalidate this cache.
"""

from collections import OrderedDict

from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.accounts.service import Principal, authenticate
from zoopay.accounts.tokens import token_hash
from zoopay.db.engine import reading


class TokenCache:
    def __init__(self, engine: AsyncEngine, max_entries: int = 10_000) -> None:
        self._engine = engine
        self._max_entries = max_entries
        self._principals: OrderedDict[str, Principal] = OrderedDict()

    async def principal(self, token: str) -> Principal | None:
        key = token_hash(token)
        principal = self._principals.get(key)
        if principal is not None:
            self._principals.move_to_end(key)
            return principal
        # A read outside any transaction: on SQLite it never waits for the write lock.
        async with reading(self._engine) as conn:
            principal = await authenticate(conn, token)
        if principal is not None:
            self._remember(key, principal)
        return principal

    def _remember(self, key: str, principal: Principal) -> None:
        self._principals[key] = principal
        if len(self._principals) > self._max_entries:
            self._principals.popitem(last=False)
