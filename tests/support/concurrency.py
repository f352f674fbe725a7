"""Running a test's requests at once."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar, cast

T = TypeVar("T")


async def all_finished(*steps: Awaitable[T]) -> list[T]:
    """Each step's result, in order, once every step has finished; then the first failure, if
    any, is raised. Unlike a bare `asyncio.gather`, a step that fails early does not leave the
    others running into the next test (where they held locks against its clean-up: CI run of
    2026-12-04 saw a deadlock and foreign-key errors in the next three tests' set-up)."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        raise failure
    return cast(list[T], results)
