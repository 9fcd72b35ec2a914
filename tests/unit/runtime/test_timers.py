"""The leader's timer service holds a bounded window of timers and still fires every one."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from partition_processor import keys
from partition_processor.commands import Command, TimerFired
from partition_processor.processor import PartitionProcessor
from partition_processor.store_memory import MemoryStore
from runtime.clock import now_ms
from runtime.supervisor import Supervisor
from runtime.worker.timers import TimerService

PARTITION = 2
CAPACITY = 16


class ApplyingProposer:
    """Stands in for the log + processor: a proposed ``TimerFired`` deletes the timer row."""

    partition = PARTITION

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.fired: list[tuple[int, str]] = []

    async def propose(self, commands: Sequence[Command]) -> int:
        await asyncio.sleep(0)
        for command in commands:
            assert isinstance(command, TimerFired)
            self.fired.append((command.wake_ms, command.timer_id))
            self.store.commit({keys.timer_key(PARTITION, command.wake_ms, command.timer_id): None})
        return len(self.fired)


def _add_timer(store: MemoryStore, wake_ms: int, timer_id: str) -> None:
    store.commit({keys.timer_key(PARTITION, wake_ms, timer_id): b""})


async def test_every_timer_fires_while_memory_holds_a_bounded_window() -> None:
    store = MemoryStore()
    chooser = random.Random(5)
    now = now_ms()
    expected = set()
    for i in range(300):  # already due, ids of varied length (the key order is not tuple order)
        timer = (now - chooser.randint(0, 5_000), f"t{i}" + "x" * chooser.randint(0, 3))
        _add_timer(store, *timer)
        expected.add(timer)
    proposer = ApplyingProposer(store)
    service = TimerService(
        proposer,  # type: ignore[arg-type]
        PartitionProcessor(store, PARTITION, "node").pending_timers,
        capacity=CAPACITY,
    )
    service.start(Supervisor())
    assert service.held == CAPACITY
    peak = service.held
    # Registered while running (rows first, as the processor commits before the action runs):
    # some fall inside the window, some beyond it, one in the future.
    later = (now_ms() + 300, "later")
    for i, timer in enumerate([*((now - i * 7, f"new{i}") for i in range(100)), later]):
        _add_timer(store, *timer)
        service.register(*timer)
        expected.add(timer)
        peak = max(peak, service.held)
        if i % 10 == 0:
            await asyncio.sleep(0)
    try:
        for _ in range(400):
            if expected <= set(proposer.fired):
                break
            await asyncio.sleep(0.01)
    finally:
        await service.stop()
    assert set(proposer.fired) == expected
    assert peak <= 2 * CAPACITY
    assert proposer.fired.index(later) == len(proposer.fired) - 1  # not before its time
    assert not list(store.scan(keys.partition_prefix(keys.Kind.TIMER, PARTITION)))


async def test_a_small_set_stays_whole_in_memory() -> None:
    store = MemoryStore()
    wake = now_ms() + 60_000
    for i in range(5):
        _add_timer(store, wake + i, f"t{i}")
    service = TimerService(
        ApplyingProposer(store),  # type: ignore[arg-type]
        PartitionProcessor(store, PARTITION, "node").pending_timers,
        capacity=CAPACITY,
    )
    service.start(Supervisor())
    try:
        service.register(wake + 10, "t10")
        assert service.held == 6
    finally:
        await service.stop()
