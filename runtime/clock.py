"""Time for record timestamps and the leader's timers; the state machine never reads it (§3).

The leader shell takes a ``Clock`` so that the simulation can drive it with a fake one, and the
in-process test harness (``sdk.testing``) with an ``AdjustableClock`` it moves forward.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def watch(self, event: asyncio.Event) -> Callable[[], None]:
        """Set ``event`` whenever the clock jumps (not as it runs); returns the unwatch."""
        ...


class SystemClock:
    """Wall-clock milliseconds."""

    def now_ms(self) -> int:
        return now_ms()

    def watch(self, event: asyncio.Event) -> Callable[[], None]:
        # The wall clock never jumps on request: a timer loop's own deadline is enough.
        return _nothing


class AdjustableClock:
    """The wall clock plus an offset that ``advance`` grows: timers due by the new time fire
    at once (their loops watch the clock), without waiting. Never goes back."""

    def __init__(self) -> None:
        self._offset_ms = 0
        self._watchers: set[asyncio.Event] = set()

    def now_ms(self) -> int:
        return now_ms() + self._offset_ms

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError(f"a clock only goes forward, got {ms} ms")
        self._offset_ms += ms
        for event in self._watchers:
            event.set()

    def watch(self, event: asyncio.Event) -> Callable[[], None]:
        self._watchers.add(event)
        return lambda: self._watchers.discard(event)


def _nothing() -> None:
    return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000
