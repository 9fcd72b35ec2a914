"""The overview's throughput chart: a ring of samples of a counter, drawn as an SVG sparkline
on the server (no chart library in the browser)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from runtime.metrics import REGISTRY

# One sample every 2 s, kept for 5 minutes.
SAMPLE_INTERVAL_S = 2.0
SAMPLES = 150
COUNTER = "cairn_invoker_attempts_started_total"


def attempts_started() -> float:
    """This node's invocation attempts started so far (the sampled counter)."""
    return REGISTRY.get_sample_value(COUNTER) or 0.0


class Throughput:
    """Samples of a counter (``read``) taken by ``run`` (a supervised task); ``rates`` are the
    per-second rates between consecutive samples."""

    def __init__(
        self,
        read: Callable[[], float] = attempts_started,
        *,
        interval_s: float = SAMPLE_INTERVAL_S,
        size: int = SAMPLES,
    ) -> None:
        self._read = read
        self._interval_s = interval_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=size + 1)

    def sample(self, at_s: float | None = None) -> None:
        self._samples.append((time.monotonic() if at_s is None else at_s, self._read()))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self._interval_s)

    def rates(self) -> list[float]:
        pairs = list(self._samples)
        return [
            max(0.0, (v1 - v0) / (t1 - t0)) if t1 > t0 else 0.0
            for (t0, v0), (t1, v1) in zip(pairs, pairs[1:], strict=False)
        ]


def sparkline(rates: list[float], *, width: int = 300, height: int = 48) -> str:
    """The points of an SVG polyline (``x,y ...``), highest rate at the top; "" when fewer than
    two rates are known."""
    if len(rates) < 2:
        return ""
    top = max(rates) or 1.0
    step = width / (len(rates) - 1)
    return " ".join(
        f"{i * step:.1f},{height - (rate / top) * (height - 2) - 1:.1f}"
        for i, rate in enumerate(rates)
    )
