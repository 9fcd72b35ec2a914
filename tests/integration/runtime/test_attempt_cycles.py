"""An ended attempt is freed by reference counting, not left to the garbage collector.

Each attempt used to leave reference cycles behind: the stream watchdog's timer callback was a
closure that scheduled itself, a finished attempt's task was a closure over the record that held
the task, and the writer task's CancelledError held the writer's frame and so the attempt. Cyclic
garbage is what makes CPython's collector run: with a few dozen objects per attempt in cycles the
node's loop stalled 10-45 ms every second or so under load (issue 10). A real node and endpoint
run in this process (``sdk.testing``), and every object the collector finds unreachable is kept
for inspection.
"""

from __future__ import annotations

import gc
from datetime import timedelta

import pytest

from runtime.invoker.attempt import Attempt
from runtime.invoker.invoker import _Running
from runtime.invoker.watchdog import StreamWatchdog
from runtime.supervisor import SupervisedTask
from sdk import Context, ObjectContext, Service, VirtualObject
from sdk.testing import TestEnvironment

pytestmark = pytest.mark.timeout(120)

greeter = Service("Greeter")
counter = VirtualObject("Counter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"hello {name}"


@greeter.handler()
async def nap(ctx: Context, name: str) -> str:
    # The sleep's completion is a notification: the attempt starts a writer task for it.
    await ctx.sleep(timedelta(milliseconds=1))
    return name


@counter.handler()
async def add(ctx: ObjectContext, amount: int) -> int:
    total: int = (await ctx.get("total", type_hint=int) or 0) + amount
    ctx.set("total", total)
    return total


async def test_ended_attempts_leave_no_reference_cycles() -> None:
    async with TestEnvironment(greeter, counter) as env:
        for _ in range(3):  # warm up: channels, caches and lazy imports are made once
            await env.client.call("Greeter", "greet", "ada")
            await env.client.call("Greeter", "nap", "ada")
            await env.client.call("Counter", "add", 1, key="k")
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector finds, to look at it
        try:
            for i in range(20):
                assert await env.client.call("Greeter", "greet", "ada") == "hello ada"
                assert await env.client.call("Greeter", "nap", "bob") == "bob"
                assert await env.client.call("Counter", "add", 1, key="k") == 4 + i
            gc.collect()
            kinds = (Attempt, _Running, SupervisedTask, StreamWatchdog)
            cyclic = [type(o).__name__ for o in gc.garbage if isinstance(o, kinds)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert cyclic == []
