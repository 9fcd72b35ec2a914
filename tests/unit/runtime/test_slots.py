"""Running slots (``runtime/invoker/slots.py``): a limit, FIFO waiting, and quiet holders asked
to suspend while starts wait."""

from __future__ import annotations

import asyncio

from runtime.invoker.slots import RunningSlots


class Holder:
    def __init__(self, quiet_s: float = 0.0) -> None:
        self._quiet_s = quiet_s
        self.suspension_requested = False

    def quiet_s(self) -> float:
        return self._quiet_s

    def request_suspension(self) -> None:
        self.suspension_requested = True


async def test_at_most_limit_hold_and_the_rest_start_in_arrival_order() -> None:
    slots = RunningSlots(2, idle_suspend_s=3600)
    order: list[int] = []
    release = {n: asyncio.Event() for n in range(5)}

    async def attempt(n: int) -> None:
        async with slots.slot(Holder()):
            order.append(n)
            await release[n].wait()

    tasks = []
    for n in range(5):
        tasks.append(asyncio.create_task(attempt(n)))
        await asyncio.sleep(0)  # arrive in order
    await asyncio.sleep(0.01)
    assert order == [0, 1] and slots.running == 2 and slots.waiting == 3
    release[1].set()
    await asyncio.sleep(0.01)
    assert order == [0, 1, 2] and slots.waiting == 2
    for n in (0, 2, 3, 4):
        release[n].set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and slots.running == 0 and slots.waiting == 0
    await slots.close()


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    slots = RunningSlots(1, idle_suspend_s=3600)
    started: list[str] = []
    gate = asyncio.Event()

    async def attempt(name: str) -> None:
        async with slots.slot(Holder()):
            started.append(name)
            await gate.wait()

    first = asyncio.create_task(attempt("first"))
    await asyncio.sleep(0)
    killed = asyncio.create_task(attempt("killed"))
    after = asyncio.create_task(attempt("after"))
    await asyncio.sleep(0.01)
    killed.cancel()
    await asyncio.gather(killed, return_exceptions=True)
    assert slots.waiting == 1
    gate.set()
    await asyncio.gather(first, after)
    assert started == ["first", "after"] and slots.running == 0 and slots.waiting == 0
    await slots.close()


async def test_while_starts_wait_the_quietest_holders_are_asked_to_suspend() -> None:
    slots = RunningSlots(2, idle_suspend_s=0.05)
    busy, quiet = Holder(quiet_s=0.0), Holder(quiet_s=10.0)
    suspended = asyncio.Event()

    async def hold(holder: Holder, until: asyncio.Event) -> None:
        async with slots.slot(holder):
            await until.wait()

    gate = asyncio.Event()
    holders = [
        asyncio.create_task(hold(busy, gate)),
        asyncio.create_task(hold(quiet, suspended)),
    ]
    await asyncio.sleep(0.01)
    assert not quiet.suspension_requested  # nobody waits: nobody is asked
    waiter = asyncio.create_task(hold(Holder(), gate))
    for _ in range(100):
        if quiet.suspension_requested:
            break
        await asyncio.sleep(0.01)
    assert quiet.suspension_requested and not busy.suspension_requested
    suspended.set()  # the quiet one suspends: its slot goes to the waiter
    await asyncio.sleep(0.01)
    assert slots.waiting == 0 and slots.running == 2
    gate.set()
    await asyncio.gather(*holders, waiter)
    await slots.close()
