"""Whether a log's broker answers (issue 9, broker outages; README "Broker outages").

A stopped or partitioned broker does not refuse connections: requests simply hang until the
client's request timeout (30 s). So reachability is probed actively, with a short timeout, and
the broker counts as unreachable once it has not answered for ``grace``. While it is:

- health answers 503 naming the log and why (``reason``);
- appends fail at once with ``LogError`` (``check``), so the ingress answers 503 with
  Retry-After instead of holding requests for the request timeout.

It recovers by itself: the first answered probe clears it. One short grace keeps a single slow
answer (a loaded machine) from flapping health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from runtime.log.base import LogError

__all__ = ["Reachability"]

_log = logging.getLogger(__name__)

PROBE_INTERVAL = timedelta(seconds=1)
PROBE_TIMEOUT = timedelta(seconds=3)
GRACE = timedelta(seconds=5)


class Reachability:
    """Probes ``probe()`` every ``interval``; unreachable after ``grace`` without an answer.

    ``what`` names the log in messages (e.g. ``Kafka topic cairn.log at host:9092``).
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[object]],
        what: str,
        *,
        interval: timedelta = PROBE_INTERVAL,
        timeout: timedelta = PROBE_TIMEOUT,
        grace: timedelta = GRACE,
    ) -> None:
        self._probe = probe
        self._what = what
        self._interval_s = interval.total_seconds()
        self._timeout_s = timeout.total_seconds()
        self._grace_s = grace.total_seconds()
        self._answered_at = time.monotonic()
        self._last_error = ""
        # Why the broker counts as unreachable now (None while it answers).
        self.reason: str | None = None

    def check(self) -> None:
        """Raise ``LogError`` at once while the broker is unreachable."""
        if self.reason is not None:
            raise LogError(self.reason)

    async def run(self) -> None:
        """Probe forever (a supervised task of the node). Never raises but on cancellation."""
        while True:
            await self.probe_once()
            await asyncio.sleep(self._interval_s)

    async def probe_once(self) -> None:
        """One probe: an answer clears ``reason``; ``grace`` without one sets it."""
        try:
            await asyncio.wait_for(self._probe(), self._timeout_s)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._last_error = f"no answer within {self._timeout_s:g} s"
        except Exception as exc:  # any client error means "no answer", never a crash
            text = str(exc)  # aiokafka's errors start with their class name already
            name = type(exc).__name__
            self._last_error = (text if text.startswith(name) else f"{name}: {text}")[:200]
        else:
            if self.reason is not None:
                down = time.monotonic() - self._answered_at
                _log.warning("%s answers again (after %.1f s)", self._what, down)
            self._answered_at = time.monotonic()
            self.reason = None
            return
        silent = time.monotonic() - self._answered_at
        if silent >= self._grace_s:
            if self.reason is None:
                _log.error(
                    "%s is unreachable: no answer for %.1f s (%s); refusing appends until it is "
                    "back",
                    self._what,
                    silent,
                    self._last_error,
                )
            self.reason = (
                f"the log is unreachable: {self._what} has not answered for {silent:.0f} s "
                f"({self._last_error})"
            )
