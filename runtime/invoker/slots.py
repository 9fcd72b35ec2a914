"""Running slots: at most ``limit`` attempts of this node hold a stream to an endpoint at once.

Further attempts wait for a slot in the order they asked (FIFO). An attempt holds its slot until
it ends, fails or suspends, so an invocation awaiting another one (a call to a handler on this
node) would keep its slot while its callee waits for one: with every slot taken that way the node
would stall until the callers' inactivity timeout. So while attempts wait, those whose stream has
been quiet for ``idle_suspend_s`` are asked to suspend (one per waiting start, longest quiet
first): an attempt awaiting something suspends at once and frees its slot; one that is computing
goes on and suspends at its next wait (DESIGN §6 step 5).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from runtime.metrics import OPEN_ATTEMPTS, WAITING_STARTS
from runtime.supervisor import SupervisedTask, Supervisor


class Holder(Protocol):
    """What the slots need of a running attempt."""

    def quiet_s(self) -> float:
        """Seconds since the last message on the attempt's stream."""
        ...

    @property
    def suspension_requested(self) -> bool: ...

    def request_suspension(self) -> None:
        """Ask the endpoint to suspend (it closes the stream once it does)."""
        ...


class RunningSlots:
    """``limit`` running slots. The nudger (asking quiet holders to suspend) runs while starts
    wait: under ``supervisor`` when given (the node's: a failing nudger is logged, counted,
    restarted and shown in health), else as a plain task of its own (tests without a node)."""

    def __init__(
        self, limit: int, *, idle_suspend_s: float, supervisor: Supervisor | None = None
    ) -> None:
        self._limit = limit
        self._idle_suspend_s = idle_suspend_s
        self._holders: set[Holder] = set()
        # Granted slots: holders plus waiters woken but not yet running.
        self._used = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._waiting = 0
        self._supervisor = supervisor
        self._nudger: asyncio.Task[None] | None = None
        self._supervised_nudger: SupervisedTask | None = None

    @property
    def waiting(self) -> int:
        """Attempts waiting for a slot."""
        return self._waiting

    @property
    def running(self) -> int:
        return len(self._holders)

    @asynccontextmanager
    async def slot(self, holder: Holder) -> AsyncIterator[None]:
        """Hold a slot for the block (waiting for one first, in arrival order)."""
        await self._acquire()
        self._holders.add(holder)
        OPEN_ATTEMPTS.inc()
        try:
            yield
        finally:
            OPEN_ATTEMPTS.dec()
            self._holders.discard(holder)
            self._release()

    async def _acquire(self) -> None:
        if self._used < self._limit and not self._waiters:
            self._used += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._set_waiting(self._waiting + 1)
        self._nudge()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # granted just as the attempt was cancelled: pass it on
            else:
                waiter.cancel()
                self._set_waiting(self._waiting - 1)
            raise

    def _release(self) -> None:
        self._used -= 1
        while self._waiters and self._used < self._limit:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue  # its attempt was cancelled while waiting
            self._used += 1
            self._set_waiting(self._waiting - 1)
            waiter.set_result(None)

    def _set_waiting(self, count: int) -> None:
        self._waiting = count
        WAITING_STARTS.set(count)

    def _nudge(self) -> None:
        if self._supervisor is not None:
            if self._supervised_nudger is None or self._supervised_nudger.done:
                self._supervised_nudger = self._supervisor.spawn(
                    "slot-nudger", self._ask_quiet_to_suspend
                )
        elif self._nudger is None or self._nudger.done():
            self._nudger = asyncio.create_task(self._ask_quiet_to_suspend(), name="slot-nudger")

    async def _ask_quiet_to_suspend(self) -> None:
        while self._waiting > 0:
            # Those asked already free their slots soon: ask only for the rest of the waiters.
            wanted = self._waiting - sum(h.suspension_requested for h in self._holders)
            quiet = sorted(
                (
                    h
                    for h in self._holders
                    if not h.suspension_requested and h.quiet_s() >= self._idle_suspend_s
                ),
                key=lambda h: h.quiet_s(),
                reverse=True,
            )
            for holder in quiet[: max(wanted, 0)]:
                holder.request_suspension()
            await asyncio.sleep(min(self._idle_suspend_s, 1.0) / 2)

    async def close(self) -> None:
        if self._supervised_nudger is not None:
            await self._supervised_nudger.stop()
        if self._nudger is not None:
            self._nudger.cancel()
            await asyncio.gather(self._nudger, return_exceptions=True)
