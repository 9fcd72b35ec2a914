"""The supervisor restarts failed tasks with a capped exponential backoff, counts and reports
them, and stops them cleanly without swallowing a cancellation."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import pytest

from runtime.metrics import REGISTRY
from runtime.supervisor import Supervisor


def _count(metric: str, task: str) -> float:
    return REGISTRY.get_sample_value(f"{metric}_total", {"task": task}) or 0.0


def _fast(**overrides: timedelta) -> Supervisor:
    options = {
        "initial_backoff": timedelta(milliseconds=10),
        "max_backoff": timedelta(milliseconds=40),
        "stable_after": timedelta(milliseconds=100),
        **overrides,
    }
    return Supervisor(**options)


async def _until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_failing_task_is_restarted_with_a_capped_exponential_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = _fast()
    starts: list[float] = []
    serving = asyncio.Event()

    async def body() -> None:
        starts.append(time.monotonic())
        if len(starts) <= 8:
            raise ValueError(f"boom {len(starts)}")
        serving.set()
        await asyncio.Event().wait()

    failures_before = _count("cairn_task_failures", "flaky")
    restarts_before = _count("cairn_task_restarts", "flaky")
    with caplog.at_level(logging.ERROR, logger="runtime.supervisor"):
        task = supervisor.spawn("partition-1/flaky", body, partition=1)
        await asyncio.wait_for(serving.wait(), 10)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # 10, 20, 40 ms, then capped at 40 ms (lower bounds: the clock only ever runs late).
    for gap, expected_ms in zip(gaps, [10, 20, 40, 40, 40, 40, 40, 40], strict=True):
        assert gap >= expected_ms / 1000 * 0.9
    assert gaps[-1] < 1.0  # uncapped, the 8th backoff would be 1.28 s
    assert task.failures == 8 and task.restarts == 8
    assert _count("cairn_task_failures", "flaky") - failures_before == 8
    assert _count("cairn_task_restarts", "flaky") - restarts_before == 8
    # Each failure is logged with its traceback.
    logged = [r for r in caplog.records if "partition-1/flaky failed" in r.getMessage()]
    assert len(logged) == 8 and all(r.exc_info for r in logged)
    await supervisor.shutdown()


async def test_a_failing_task_is_reported_until_its_restart_is_stable() -> None:
    supervisor = _fast(stable_after=timedelta(milliseconds=200))
    runs = 0
    release = asyncio.Event()

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ValueError("bad row")
        await release.wait()

    task = supervisor.spawn("partition-3/outbox", body, partition=3)
    await _until(lambda: runs == 1)
    await asyncio.sleep(0)
    [failing] = supervisor.failing()
    assert failing is task and failing.partition == 3
    assert failing.failing == "outbox restarting after ValueError: bad row"
    await _until(lambda: runs == 2)
    assert supervisor.failing() == [task]  # restarted, not yet stable
    await _until(lambda: not supervisor.failing())
    release.set()
    await _until(lambda: task.done)
    assert runs == 2  # a task that returns is done, not restarted
    assert supervisor.names() == []
    await supervisor.shutdown()


async def test_stop_cancels_and_waits_and_is_idempotent() -> None:
    supervisor = _fast()
    cleaned = asyncio.Event()
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    failures_before = _count("cairn_task_failures", "worker")
    task = supervisor.spawn("worker", body)
    await started.wait()
    await task.stop()
    assert cleaned.is_set() and task.done
    await task.stop()  # again: nothing happens
    await supervisor.shutdown()
    await supervisor.shutdown()
    assert _count("cairn_task_failures", "worker") == failures_before  # a stop is no failure
    with pytest.raises(RuntimeError, match="shut down"):
        supervisor.spawn("late", body)


async def test_shutdown_stops_every_task_even_one_waiting_to_restart() -> None:
    supervisor = Supervisor(initial_backoff=timedelta(seconds=60))

    async def failing() -> None:
        raise ValueError("down")

    async def forever() -> None:
        await asyncio.Event().wait()

    down = supervisor.spawn("down", failing)
    up = supervisor.spawn("up", forever)
    await _until(lambda: down.failures == 1)
    await asyncio.wait_for(supervisor.shutdown(), 5)  # does not wait out the 60 s backoff
    assert down.done and up.done


async def test_a_cancelled_caller_of_stop_is_cancelled_too() -> None:
    supervisor = _fast()
    release = asyncio.Event()

    async def stubborn() -> None:
        # Cleanup that takes a while after the cancellation (e.g. closing a stream).
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()

    task = supervisor.spawn("stubborn", stubborn)
    await asyncio.sleep(0.01)
    stopper = asyncio.create_task(task.stop())
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper  # the cancellation of the caller is not swallowed
    release.set()
    await _until(lambda: task.done)


async def test_the_body_cancellation_is_not_a_failure_and_not_restarted() -> None:
    supervisor = _fast()
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        raise asyncio.CancelledError  # e.g. a cancelled inner await that propagates

    task = supervisor.spawn("cancelled", body)
    await _until(lambda: task.done)
    await asyncio.sleep(0.05)
    assert runs == 1 and task.failures == 0


async def test_a_one_shot_task_is_logged_and_counted_but_not_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = _fast()
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        raise KeyError("gone")

    before = _count("cairn_task_failures", "response-delivery")
    with caplog.at_level(logging.ERROR, logger="runtime.supervisor"):
        task = supervisor.spawn("response-delivery", body, restart=False)
        await _until(lambda: task.done)
    await asyncio.sleep(0.05)
    assert runs == 1 and task.failures == 1 and not supervisor.failing()
    assert _count("cairn_task_failures", "response-delivery") - before == 1
    assert any("response-delivery failed" in r.getMessage() for r in caplog.records)
    await supervisor.shutdown()


async def test_a_task_that_was_stable_restarts_after_the_initial_backoff_again() -> None:
    supervisor = _fast(
        initial_backoff=timedelta(milliseconds=10),
        max_backoff=timedelta(seconds=30),
        stable_after=timedelta(milliseconds=150),
    )
    backoffs: list[float] = []
    reasons: list[str | None] = []

    async def body() -> None:
        backoffs.append(task.last_backoff_s)
        reasons.append(task.failing)
        if len(backoffs) == 4:
            await asyncio.sleep(0.3)  # runs stably for a while, then fails again
        if len(backoffs) <= 4:
            raise ValueError("x" * 1000)
        await asyncio.Event().wait()

    task = supervisor.spawn("partition-0/again", body, partition=0)
    await _until(lambda: len(backoffs) == 5)
    # 10, 20, 40 ms; after the stable run back to 10 ms (not 80).
    assert backoffs == [0.0, 0.01, 0.02, 0.04, 0.01]
    reason = reasons[-1]  # as health shows it while the restart is not yet stable
    assert reason is not None and reason.startswith("again restarting after ValueError: xxx")
    assert len(reason) < 400  # cut short
    await supervisor.shutdown()
