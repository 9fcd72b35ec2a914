"""The leader's timer service: fires due timer rows by appending ``TimerFired`` (DESIGN §5)."""

from __future__ import annotations

import asyncio
import heapq
import logging

from partition_processor.commands import TimerFired
from runtime.clock import now_ms
from runtime.log import LogError
from runtime.worker.proposer import LeaderProposer

log = logging.getLogger(__name__)


class TimerService:
    """Keeps the partition's timers in a heap and proposes each when due.

    Firing is at-least-once (a retry after a failed append, a timer loaded twice); applying
    ``TimerFired`` deletes the row, so a second firing finds nothing.
    """

    def __init__(self, proposer: LeaderProposer) -> None:
        self._proposer = proposer
        self._heap: list[tuple[int, str]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, timers: list[tuple[int, str]]) -> None:
        for timer in timers:
            heapq.heappush(self._heap, timer)
        self._task = asyncio.create_task(self._run(), name=f"timers-{self._proposer.partition}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def register(self, wake_ms: int, timer_id: str) -> None:
        heapq.heappush(self._heap, (wake_ms, timer_id))
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            if not self._heap:
                await self._wakeup.wait()
                continue
            delay_s = (self._heap[0][0] - now_ms()) / 1000
            if delay_s > 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=delay_s)
                except TimeoutError:
                    pass
                continue
            due = []
            now = now_ms()
            while self._heap and self._heap[0][0] <= now:
                due.append(heapq.heappop(self._heap))
            try:
                await self._proposer.propose([TimerFired(wake, tid) for wake, tid in due])
            except LogError as exc:
                log.warning("could not fire %d timers, retrying: %s", len(due), exc)
                for timer in due:
                    heapq.heappush(self._heap, timer)
                await asyncio.sleep(0.5)
