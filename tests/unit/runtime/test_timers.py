"""The leader's timer queue holds a bounded window of timers and still fires every one."""

from __future__ import annotations

import random

from partition_processor import keys
from partition_processor.processor import PartitionProcessor
from partition_processor.store_memory import MemoryStore
from runtime.worker.timers import Timer, TimerQueue

PARTITION = 2
CAPACITY = 16
NOW_MS = 1_000_000


def _add_timer(store: MemoryStore, wake_ms: int, timer_id: str) -> None:
    store.commit({keys.timer_key(PARTITION, wake_ms, timer_id): b""})


def _apply_fired(store: MemoryStore, fired: list[Timer]) -> None:
    """What applying ``TimerFired`` does to the rows: deletes them."""
    store.commit({keys.timer_key(PARTITION, wake, tid): None for wake, tid in fired})


def test_every_timer_fires_while_memory_holds_a_bounded_window() -> None:
    store = MemoryStore()
    chooser = random.Random(5)
    expected = set()
    for i in range(300):  # already due, ids of varied length (the key order is not tuple order)
        timer = (NOW_MS - chooser.randint(0, 5_000), f"t{i}" + "x" * chooser.randint(0, 3))
        _add_timer(store, *timer)
        expected.add(timer)
    queue = TimerQueue(
        PARTITION, PartitionProcessor(store, PARTITION, "node").pending_timers, CAPACITY
    )
    assert queue.held == CAPACITY
    peak = queue.held
    fired: list[Timer] = []
    # Registered while firing (rows first, as the processor commits before the action runs):
    # some fall inside the window, some beyond it, one in the future.
    later = (NOW_MS + 300, "later")
    for i, timer in enumerate([*((NOW_MS - i * 7, f"new{i}") for i in range(100)), later]):
        _add_timer(store, *timer)
        queue.register(*timer)
        expected.add(timer)
        peak = max(peak, queue.held)
        if i % 10 == 0:
            due = queue.pop_due(NOW_MS)  # two fire, the rest are put back (a failed append)
            fired += due[:2]
            _apply_fired(store, due[:2])
            queue.restore(due[2:])
    while due := queue.pop_due(NOW_MS):
        fired += due
        _apply_fired(store, due)
    assert later not in fired  # not before its time
    assert queue.next_wake_ms() == later[0]
    fired += queue.pop_due(later[0])
    assert set(fired) == expected
    assert len(fired) == len(expected)  # each once
    assert peak <= 2 * CAPACITY


def test_a_small_set_stays_whole_in_memory() -> None:
    store = MemoryStore()
    wake = NOW_MS + 60_000
    for i in range(5):
        _add_timer(store, wake + i, f"t{i}")
    queue = TimerQueue(
        PARTITION, PartitionProcessor(store, PARTITION, "node").pending_timers, CAPACITY
    )
    assert not queue.register(wake + 10, "t10")  # not the earliest: no earlier wake-up
    assert queue.held == 6
    assert queue.pop_due(wake - 1) == []
    assert queue.pop_due(wake + 1) == [(wake, "t0"), (wake + 1, "t1")]


def test_register_says_whether_the_timer_is_now_the_earliest_held() -> None:
    store = MemoryStore()
    queue = TimerQueue(
        PARTITION, PartitionProcessor(store, PARTITION, "node").pending_timers, CAPACITY
    )
    assert queue.register(NOW_MS + 100, "a")  # the first
    assert not queue.register(NOW_MS + 200, "b")
    assert not queue.register(NOW_MS + 100, "b")  # same time, sorted after "a"
    assert queue.register(NOW_MS + 50, "c")
    assert queue.next_wake_ms() == NOW_MS + 50
