"""The LocalLog writer and the slot nudger run under the node's ``Supervisor`` (DESIGN §11):
a failure is logged, counted, shown in health and the task restarted; without a supervisor
both keep a task of their own (as standalone tests use them)."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from runtime.health import NodeHealth
from runtime.invoker.slots import RunningSlots
from runtime.log import LocalLog, LogError
from runtime.metrics import REGISTRY
from runtime.supervisor import Supervisor


def _count(metric: str, task: str) -> float:
    return REGISTRY.get_sample_value(f"{metric}_total", {"task": task}) or 0.0


def _fast_supervisor() -> Supervisor:
    return Supervisor(
        initial_backoff=timedelta(milliseconds=20),
        max_backoff=timedelta(milliseconds=50),
        stable_after=timedelta(seconds=30),
    )


async def _eventually(check: object, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_failed_local_log_write_fails_its_append_and_shows_in_health_and_metrics(
    tmp_path: Path,
) -> None:
    broken = {"on": False}

    def sync(fd: int) -> None:
        if broken["on"]:
            raise OSError(5, "Input/output error")
        os.fsync(fd)

    supervisor = _fast_supervisor()
    health = NodeHealth(supervisor, lambda _: True, retry_after_s=1)
    health.phase = "serving"
    log = LocalLog(tmp_path / "partitions", 2, sync_file=sync, supervisor=supervisor)
    await log.start()
    assert supervisor.names() == ["partitions/local-log-writer"]
    assert await log.append(0, [b"a", b"b"]) == 1
    assert health.problem() is None
    failures = _count("cairn_task_failures", "local-log-writer")
    restarts = _count("cairn_task_restarts", "local-log-writer")

    broken["on"] = True
    with pytest.raises(LogError, match="log write failed"):
        await log.append(1, [b"c"])
    with pytest.raises(LogError, match="restart the log"):
        await log.append(0, [b"d"])  # refused until the log restarts, never half-written

    await _eventually(lambda: _count("cairn_task_restarts", "local-log-writer") >= restarts + 2)
    # Restarted while the log refuses appends, it fails again: health keeps reporting it.
    assert _count("cairn_task_failures", "local-log-writer") >= failures + 2
    problem = health.problem()
    assert problem is not None and "local-log-writer" in problem["message"]
    assert "log write failed" in problem["message"]
    assert [t["name"] for t in problem["tasks"]] == ["partitions/local-log-writer"]

    await log.close()  # the pending restart sees the close and ends
    assert supervisor.names() == []
    await supervisor.shutdown()


async def test_a_local_log_writer_stopped_by_its_supervisor_refuses_appends_and_closes(
    tmp_path: Path,
) -> None:
    supervisor = _fast_supervisor()
    log = LocalLog(tmp_path / "partitions", 1, supervisor=supervisor)
    await log.start()
    assert await log.append(0, [b"a"]) == 0
    await supervisor.shutdown()  # the node stops its tasks before it closes the log
    with pytest.raises(LogError, match="writer stopped"):
        await log.append(0, [b"b"])
    await log.close()
    reopened = LocalLog(tmp_path / "partitions", 1)
    await reopened.start()
    assert await reopened.tail(0) == 1 and await reopened.append(0, [b"b"]) == 1
    await reopened.close()


async def test_without_a_supervisor_a_failed_write_ends_the_log_s_own_writer(
    tmp_path: Path,
) -> None:
    def sync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    log = LocalLog(tmp_path / "partitions", 1, sync_file=sync)
    await log.start()
    with pytest.raises(LogError, match="log write failed"):
        await log.append(0, [b"a"])
    with pytest.raises(LogError, match="restart the log"):
        await log.append(0, [b"b"])
    await log.close()


class _Holder:
    """A running attempt whose quietness cannot be read the first ``fail`` times."""

    def __init__(self, fail: int) -> None:
        self._fail = fail
        self.suspension_requested = False

    def quiet_s(self) -> float:
        if self._fail > 0:
            self._fail -= 1
            raise RuntimeError("stream state unreadable")
        return 10.0

    def request_suspension(self) -> None:
        self.suspension_requested = True


async def test_a_failing_slot_nudger_is_counted_shown_in_health_and_restarted() -> None:
    supervisor = Supervisor(
        initial_backoff=timedelta(milliseconds=300),
        max_backoff=timedelta(milliseconds=300),
        stable_after=timedelta(seconds=30),
    )
    health = NodeHealth(supervisor, lambda _: True, retry_after_s=1)
    health.phase = "serving"
    slots = RunningSlots(1, idle_suspend_s=0.01, supervisor=supervisor)
    holder = _Holder(fail=1)
    suspended = asyncio.Event()
    failures = _count("cairn_task_failures", "slot-nudger")
    restarts = _count("cairn_task_restarts", "slot-nudger")

    async def hold() -> None:
        async with slots.slot(holder):
            await suspended.wait()

    async def wait_for_slot() -> None:
        async with slots.slot(_Holder(fail=0)):
            pass

    running = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(wait_for_slot())
    await _eventually(lambda: _count("cairn_task_failures", "slot-nudger") == failures + 1)
    problem = health.problem()
    assert problem is not None and "slot-nudger restarting after RuntimeError" in problem["message"]
    await _eventually(lambda: holder.suspension_requested)  # the restarted nudger asked
    assert _count("cairn_task_restarts", "slot-nudger") == restarts + 1
    suspended.set()
    await asyncio.gather(running, waiting)
    assert slots.waiting == 0 and slots.running == 0
    await slots.close()
    await supervisor.shutdown()


async def test_a_supervisor_s_shutdown_finishes_the_round_in_flight_and_the_queued_appends(
    tmp_path: Path,
) -> None:
    """The node stops its tasks before it closes the log: appends already queued are written
    and acknowledged as close() would, and no file is closed under the writing thread."""
    syncing = threading.Event()
    release = threading.Event()

    def slow_sync(fd: int) -> None:
        syncing.set()
        release.wait(30)
        os.fsync(fd)

    supervisor = _fast_supervisor()
    log = LocalLog(tmp_path / "partitions", 1, sync_file=slow_sync, supervisor=supervisor)
    await log.start()
    first = asyncio.create_task(log.append(0, [b"a"]))
    await asyncio.to_thread(syncing.wait, 30)  # the first round is in its fsync
    queued = [asyncio.create_task(log.append(0, [b"%d" % i])) for i in range(3)]
    await asyncio.sleep(0.01)
    shutdown = asyncio.create_task(supervisor.shutdown())
    await asyncio.sleep(0.05)
    assert not shutdown.done()  # waits for the thread: it cannot be stopped
    release.set()
    await shutdown
    assert await first == 0
    assert sorted([await task for task in queued]) == [1, 2, 3]
    await log.close()
    reopened = LocalLog(tmp_path / "partitions", 1)
    await reopened.start()
    assert await reopened.tail(0) == 4
    await reopened.close()
