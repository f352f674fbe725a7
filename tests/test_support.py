"""The suite's own helpers, where a mistake in them would hide a failure or cause one."""

import asyncio

import pytest

from tests.support.concurrency import all_finished


async def test_all_finished_raises_a_failure_only_once_every_step_has_finished() -> None:
    finished: list[str] = []

    async def fails_first() -> str:
        raise AssertionError("503 == 200")

    async def finishes_later() -> str:
        await asyncio.sleep(0.05)
        finished.append("later")
        return "later"

    with pytest.raises(AssertionError, match="503 == 200"):
        await all_finished(finishes_later(), fails_first(), finishes_later())
    # A bare gather raises at once and leaves both still running.
    assert finished == ["later", "later"]


async def test_all_finished_answers_each_result_in_order() -> None:
    async def after(seconds: float, value: int) -> int:
        await asyncio.sleep(seconds)
        return value

    assert await all_finished(after(0.02, 1), after(0, 2), after(0.01, 3)) == [1, 2, 3]
