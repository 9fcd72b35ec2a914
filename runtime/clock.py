"""Wall-clock time for record timestamps. The state machine never calls this (DESIGN §3)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
