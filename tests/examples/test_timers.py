"""examples/timers.py through sdk.testing: sleeps and timeouts end when the clock is advanced."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from examples import timers
from sdk.testing import CallFailed, TestEnvironment, fixture

env = fixture(timers.app)


async def _suspended_on_sleep(env: TestEnvironment, invocation_id: str) -> None:
    async def sleeping() -> bool:
        status = await env.client.status(invocation_id)
        return any(e["command"].startswith("sleep") for e in status["journal"])

    await env.wait_for(sleeping)


async def test_an_hour_sleep_ends_when_the_clock_is_advanced(env: TestEnvironment) -> None:
    invocation_id = await env.client.send("Reminders", "remind", "tea")
    await _suspended_on_sleep(env, invocation_id)
    attach = asyncio.create_task(env.client.attach(invocation_id))
    await asyncio.sleep(0.2)
    assert not attach.done()  # still asleep: nothing fires without the advance
    await env.advance(timedelta(hours=1))
    assert await asyncio.wait_for(attach, 30) == "time for tea"


async def test_a_timeout_wins_over_a_slower_call(env: TestEnvironment) -> None:
    # The call sleeps 10 minutes, the timeout 5: advancing 6 fires only the timeout.
    invocation_id = await env.client.send("Reminders", "first_of", 600)
    await _suspended_on_sleep(env, invocation_id)
    await env.advance(timedelta(minutes=6))
    assert await asyncio.wait_for(env.client.attach(invocation_id), 30) == "timed out"
    assert await env.client.call("Reminders", "first_of", 0) == "answered"


async def test_the_clock_only_goes_forward_and_bad_calls_fail_clearly(env: TestEnvironment) -> None:
    with pytest.raises(ValueError, match="only goes forward"):
        await env.advance(timedelta(seconds=-1))
    with pytest.raises(CallFailed) as failed:
        await env.client.call("Nowhere", "nothing")
    assert failed.value.status == 404
