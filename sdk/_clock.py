"""The time handlers' timers are computed from (a sleep's wake-up, a delayed send's start).

The wall clock, plus an offset that only ``sdk.testing`` moves: it advances the embedded node's
clock and this one together, so a timer created after an ``advance`` is not already due.
"""

from __future__ import annotations

import time

_offset_ms = 0


def now_ms() -> int:
    return time.time_ns() // 1_000_000 + _offset_ms


def shift(ms: int) -> None:
    """Move this process's handler clock by ``ms`` (``sdk.testing`` only)."""
    global _offset_ms
    _offset_ms += ms
