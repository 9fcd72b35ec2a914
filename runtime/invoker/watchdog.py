"""The watchdog of one attempt's stream: a timer, not a task (one less task per attempt)."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Watched(Protocol):
    def quiet_s(self) -> float:
        """Seconds since the stream last made progress."""
        ...

    def request_suspension(self) -> None: ...


class StreamWatchdog:
    """``expired`` is resolved once the stream has been quiet for inactivity + abort timeout;
    once it has been quiet for the inactivity timeout, the endpoint is asked to suspend.
    Cancelling ``expired`` stops the timer.

    Written so that no reference cycle outlives it: once ``expired`` is done, the timer is
    cancelled and the watched attempt let go, so the attempt is freed by reference counting
    when its run ends, not by the garbage collector (issue 10: a closure that scheduled
    itself kept one cycle per attempt, and their collections stalled the node's loop).
    """

    def __init__(self, watched: Watched, inactivity_s: float, abort_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._watched: Watched | None = watched
        self._inactivity_s = inactivity_s
        self._abort_s = abort_s
        self._timer: asyncio.TimerHandle | None = None
        self.expired: asyncio.Future[None] = self._loop.create_future()
        self.expired.add_done_callback(self._stop)
        self._check()

    def _check(self) -> None:
        watched = self._watched
        if watched is None or self.expired.done():
            return
        quiet = watched.quiet_s()
        if quiet >= self._inactivity_s + self._abort_s:
            self.expired.set_result(None)
            return
        if quiet >= self._inactivity_s:
            watched.request_suspension()
            wake = self._inactivity_s + self._abort_s
        else:
            wake = self._inactivity_s
        self._timer = self._loop.call_later(wake - quiet, self._check)

    def _stop(self, _: asyncio.Future[None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watched = None
