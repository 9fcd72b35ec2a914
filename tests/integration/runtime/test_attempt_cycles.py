"""An ended attempt is freed by reference counting, not left to the garbage collector.

Each attempt used to leave reference cycles behind: the stream watchdog's timer callback was a
closure that scheduled itself, a finished attempt's task was a closure over the record that held
the task, and the writer task's CancelledError held the writer's frame and so the attempt. Cyclic
garbage is what makes CPython's collector run: with a few dozen objects per attempt in cycles the
node's loop stalled 10-45 ms every second or so under load (issue 10). A real node and endpoint
run in this process (``sdk.testing``) through calls, sends, sleeps, awakeables, steps, state and a
workflow's promise, and every object the collector finds unreachable is kept for inspection:
none may be of this repository's code.
"""

from __future__ import annotations

import asyncio
import gc
import types
from datetime import timedelta
from pathlib import Path

import pytest

from sdk import (
    Context,
    ObjectContext,
    Service,
    VirtualObject,
    Workflow,
    WorkflowContext,
    WorkflowSharedContext,
)
from sdk.testing import TestEnvironment

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[3]
OURS = ("runtime", "sdk", "partition_processor", "proto")

greeter = Service("Greeter")
counter = VirtualObject("Counter")
flow = Workflow("Flow")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"hello {name}"


@greeter.handler()
async def nap(ctx: Context, name: str) -> str:
    # The sleep's completion is a notification: the attempt starts a writer task for it.
    await ctx.sleep(timedelta(milliseconds=1))
    return name


@greeter.handler()
async def relay(ctx: Context, name: str) -> str:
    """A call and a send (through the outbox), an awakeable resolved by another invocation, and
    a step."""
    answer = await ctx.service_call(greet, name)
    ctx.service_send(greet, name)
    awakeable_id, awakeable = ctx.awakeable(type_hint=str)
    ctx.service_send(resolve, awakeable_id)
    resolved = await awakeable
    return await ctx.run_typed("join", lambda: f"{answer} {resolved}")


@greeter.handler()
async def resolve(ctx: Context, awakeable_id: str) -> None:
    ctx.resolve_awakeable(awakeable_id, "again")


@counter.handler()
async def add(ctx: ObjectContext, amount: int) -> int:
    total: int = (await ctx.get("total", type_hint=int) or 0) + amount
    ctx.set("total", total)
    return total


@flow.main()
async def run(ctx: WorkflowContext, name: str) -> str:
    return await ctx.promise("go", type_hint=str).value()


@flow.handler()
async def go(ctx: WorkflowSharedContext, value: str) -> None:
    await ctx.promise("go", type_hint=str).resolve(value)


def _ours(thing: object) -> bool:
    """An object of this repository's code: its type's module, or a coroutine, function or frame
    whose code is in the repository."""
    code = getattr(thing, "cr_code", None) or getattr(thing, "__code__", None)
    if isinstance(thing, types.FrameType):
        code = thing.f_code
    if isinstance(code, types.CodeType):
        return code.co_filename.startswith(str(REPO)) and "/.venv/" not in code.co_filename
    return type(thing).__module__.split(".")[0] in OURS


async def _round(env: TestEnvironment, i: int) -> None:
    client = env.client
    assert await client.call("Greeter", "greet", "ada") == "hello ada"
    assert await client.call("Greeter", "nap", "bob") == "bob"
    assert await client.call("Greeter", "relay", "cy") == "hello cy again"
    assert await client.call("Counter", "add", 1, key="k") == i + 1
    await client.send("Flow", "run", "x", key=f"w{i}")
    await client.call("Flow", "go", f"v{i}", key=f"w{i}")
    assert await client.workflow_output("Flow", f"w{i}") == f"v{i}"


async def test_ended_invocations_leave_no_reference_cycles() -> None:
    async with TestEnvironment(greeter, counter, flow) as env:
        for i in range(3):  # warm up: channels, caches and lazy imports are made once
            await _round(env, i)
        await asyncio.sleep(0.2)  # (the sends' invocations end)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector finds, to look at it
        try:
            for i in range(3, 13):
                await _round(env, i)
            await asyncio.sleep(0.2)
            gc.collect()
            cyclic = sorted({type(o).__qualname__ for o in gc.garbage if _ours(o)})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert cyclic == []
