"""Time for record timestamps and the leader's timers; the state machine never reads it (§3).

The leader shell takes a ``Clock`` so that the simulation can drive it with a fake one.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock milliseconds."""

    def now_ms(self) -> int:
        return now_ms()


def now_ms() -> int:
    return time.time_ns() // 1_000_000
