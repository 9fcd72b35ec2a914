"""A fixture's stop that hangs fails the test naming it; its own errors pass through
(tests/support/teardown.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.teardown import bounded


async def test_a_stop_that_hangs_fails_the_test_naming_it() -> None:
    with pytest.raises(pytest.fail.Exception, match="teardown: the node's stop did not end"):
        await bounded("the node's stop", asyncio.Event().wait, timeout_s=0.05)


async def test_a_stop_that_ends_or_fails_on_its_own_is_left_alone() -> None:
    await bounded("a quick stop", lambda: asyncio.sleep(0), timeout_s=10)

    async def times_out_itself() -> None:
        raise TimeoutError("the broker did not answer")

    with pytest.raises(TimeoutError, match="the broker did not answer"):
        await bounded("a stop with its own timeout", times_out_itself, timeout_s=10)
