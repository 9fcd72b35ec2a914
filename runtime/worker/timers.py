"""The leader's timers, sans-I/O: which timer rows are due, holding a bounded window (DESIGN §5).

The leader shell (``runtime.worker.leader``) asks ``pop_due(now_ms)`` on every clock tick and
proposes ``TimerFired`` for what it returns; the asyncio driver sleeps until ``next_wake_ms``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from partition_processor import keys

TimerLoader = Callable[[bytes | None, int], list[tuple[int, str]]]
Timer = tuple[int, str]  # (wake_ms, timer id)

DEFAULT_CAPACITY = 1024


class TimerQueue:
    """The partition's timers in wake order, holding only the earliest in memory.

    The timer rows live in the store (DESIGN §5). The queue keeps a heap of at most about
    ``2 × capacity`` of the earliest; ``horizon`` is the key of the last one it holds when more
    exist. Timers registered beyond the horizon stay in the store, and when the heap runs dry the
    next window is loaded from there. So memory does not grow with the number of retained
    invocations, each of which has a retention timer.

    Firing is at-least-once (a retry after a failed append, a timer loaded twice); applying
    ``TimerFired`` deletes the row, so a second firing finds nothing.
    """

    def __init__(self, partition: int, load: TimerLoader, capacity: int = DEFAULT_CAPACITY) -> None:
        self._partition = partition
        self._load_rows = load
        self._capacity = capacity
        self._heap: list[Timer] = []
        self._horizon: bytes | None = None  # timer keys above it are only in the store
        self._load(None)

    @property
    def held(self) -> int:
        """How many timers are in memory."""
        return len(self._heap)

    def register(self, wake_ms: int, timer_id: str) -> bool:
        """Hold a newly written timer row; True if it is now the earliest held (a driver
        sleeping until the earlier head has to wake sooner; otherwise its sleep stands)."""
        if self._horizon is not None and self._key(wake_ms, timer_id) > self._horizon:
            return False  # in the store: loaded with its window
        timer = (wake_ms, timer_id)
        heapq.heappush(self._heap, timer)
        if len(self._heap) > 2 * self._capacity:
            self._shrink()
        return self._heap[0] == timer

    def next_timer(self) -> Timer | None:
        """The earliest timer (loading the next window from the store when the heap ran dry)."""
        while not self._heap and self._horizon is not None:
            self._load(self._horizon + b"\x00")  # the next window, just past the last
        return self._heap[0] if self._heap else None

    def next_wake_ms(self) -> int | None:
        timer = self.next_timer()
        return timer[0] if timer is not None else None

    def pop_due(self, now_ms: int) -> list[Timer]:
        """Remove and return every timer due at ``now_ms``, earliest first."""
        due = []
        while (timer := self.next_timer()) is not None and timer[0] <= now_ms:
            due.append(heapq.heappop(self._heap))
        return due

    def restore(self, timers: list[Timer]) -> None:
        """Put back timers whose firing could not be appended (they are tried again)."""
        for timer in timers:
            heapq.heappush(self._heap, timer)

    def _key(self, wake_ms: int, timer_id: str) -> bytes:
        return keys.timer_key(self._partition, wake_ms, timer_id)

    def _load(self, start: bytes | None) -> None:
        """Hold the earliest timers from ``start`` on (everything before it has fired)."""
        rows = self._load_rows(start, self._capacity + 1)
        more = len(rows) > self._capacity
        rows = rows[: self._capacity]
        for row in rows:
            heapq.heappush(self._heap, row)
        self._horizon = self._key(*rows[-1]) if more else None

    def _shrink(self) -> None:
        """Keep the earliest ``capacity`` timers (in key order, as the store sorts them)."""
        kept = sorted(self._heap, key=lambda timer: self._key(*timer))[: self._capacity]
        self._horizon = self._key(*kept[-1])
        heapq.heapify(kept)
        self._heap = kept
