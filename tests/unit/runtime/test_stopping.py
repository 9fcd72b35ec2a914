"""A node's stop runs every step even after one that failed, and runs to its end even when its
caller stops waiting (runtime/stopping.py; the node itself: test_graceful_stop.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runtime.stopping import StopOnce, StopStep, run_steps


async def test_a_failing_step_does_not_skip_the_later_ones_and_its_error_is_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []

    async def channels() -> None:
        raise RuntimeError("a channel would not close")

    async def log_close() -> None:
        await asyncio.sleep(0)
        done.append("log")

    steps: list[StopStep] = [
        ("tasks", lambda: done.append("tasks")),
        ("endpoint channels", channels),
        ("log", log_close),
        ("store", lambda: done.append("store")),
    ]
    with caplog.at_level(logging.ERROR, "runtime.stopping"):
        with pytest.raises(RuntimeError, match="would not close"):
            await run_steps(steps)
    assert done == ["tasks", "log", "store"]
    assert "stopping the node: endpoint channels failed" in caplog.text


async def test_the_first_of_several_failures_is_raised() -> None:
    def fail(message: str) -> None:
        raise ValueError(message)

    with pytest.raises(ValueError, match="first"):
        await run_steps([("a", lambda: fail("first")), ("b", lambda: fail("second"))])


async def test_a_cancelled_caller_is_cancelled_and_the_stop_goes_on_for_the_next_one() -> None:
    stop = StopOnce()
    release = asyncio.Event()
    done: list[str] = []
    built = 0

    def steps() -> list[StopStep]:
        nonlocal built
        built += 1
        return [("servers", release.wait), ("log", lambda: done.append("log"))]

    first = asyncio.ensure_future(stop.run(steps))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert built == 1 and done == []  # started, and not cut short
    second = asyncio.ensure_future(stop.run(steps))
    await asyncio.sleep(0)
    assert not second.done()  # waits for the stop under way, does not start another
    release.set()
    await asyncio.wait_for(second, 10)
    assert done == ["log"] and built == 1
    await stop.run(steps)  # once done, a further call returns at once
    assert done == ["log"] and built == 1
