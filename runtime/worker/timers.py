"""The leader's timer service: fires due timer rows by appending ``TimerFired`` (DESIGN §5)."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable

from partition_processor import keys
from partition_processor.commands import TimerFired
from runtime.clock import now_ms
from runtime.faults import fault_point
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.worker.proposer import LeaderProposer

log = logging.getLogger(__name__)


TimerLoader = Callable[[bytes | None, int], list[tuple[int, str]]]

DEFAULT_CAPACITY = 1024


class TimerService:
    """Proposes each of the partition's timers when due, holding only the earliest in memory.

    The timer rows live in the store (DESIGN §5). The service keeps a heap of at most about
    ``2 × capacity`` of the earliest; ``horizon`` is the key of the last one it holds when more
    exist. Timers registered beyond the horizon stay in the store, and when the heap runs dry the
    next window is loaded from there. So memory does not grow with the number of retained
    invocations, each of which has a retention timer.

    Firing is at-least-once (a retry after a failed append, a timer loaded twice); applying
    ``TimerFired`` deletes the row, so a second firing finds nothing.
    """

    def __init__(
        self, proposer: LeaderProposer, load: TimerLoader, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self._proposer = proposer
        self._load_rows = load
        self._capacity = capacity
        self._heap: list[tuple[int, str]] = []
        self._horizon: bytes | None = None  # timer keys above it are only in the store
        self._wakeup = asyncio.Event()
        self._task: SupervisedTask | None = None
        self._runs = 0

    def start(self, supervisor: Supervisor) -> None:
        self._load(None)
        partition = self._proposer.partition
        self._task = supervisor.spawn(
            f"partition-{partition}/timers", self._serve, partition=partition
        )

    async def stop(self) -> None:
        if self._task is not None:
            await self._task.stop()
            self._task = None

    def register(self, wake_ms: int, timer_id: str) -> None:
        if self._horizon is not None and self._key(wake_ms, timer_id) > self._horizon:
            return  # in the store: loaded with its window
        heapq.heappush(self._heap, (wake_ms, timer_id))
        if len(self._heap) > 2 * self._capacity:
            self._shrink()
        self._wakeup.set()

    @property
    def held(self) -> int:
        """How many timers are in memory."""
        return len(self._heap)

    def _key(self, wake_ms: int, timer_id: str) -> bytes:
        return keys.timer_key(self._proposer.partition, wake_ms, timer_id)

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

    async def _serve(self) -> None:
        self._runs += 1
        if self._runs > 1:
            # Restarted after a failure: due timers popped but never fired are still rows in
            # the store, so reload the window from there (firing twice is harmless).
            self._heap.clear()
            self._load(None)
        await self._run()

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            if not self._heap:
                if self._horizon is not None:
                    self._load(self._horizon + b"\x00")  # the next window, just past the last
                    continue
                await self._wakeup.wait()
                continue
            delay_s = (self._heap[0][0] - now_ms()) / 1000
            if delay_s > 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=delay_s)
                except TimeoutError:
                    pass
                continue
            fault_point("timers.fire")
            due = []
            now = now_ms()
            while self._heap and self._heap[0][0] <= now:
                due.append(heapq.heappop(self._heap))
            # A failure (the log refusing the append, too) ends the task: the supervisor reports
            # it in the node's health and restarts it, reloading these timers from the store.
            await self._proposer.propose([TimerFired(wake, tid) for wake, tid in due])
