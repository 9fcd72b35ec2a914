"""The handlers of the side-by-side matrix (``benchmarks.matrix``), written once for both SDKs.

``build(module)`` takes the SDK module, Cairn's ``sdk`` or restate-sdk's ``restate`` (the same
public names), so both servers run the very same handler code: ``benchmarks.matrix_app:app`` for
Cairn, ``benchmarks.matrix_restate:app`` for Restate (hypercorn in ``benchmarks/.restate/venv``).
This module imports neither SDK.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def _step() -> int:
    return 1


def build(restate: Any) -> Any:
    """The matrix's services against ``restate`` (an SDK module); returns its app."""
    greeter = restate.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: Any, name: str) -> str:
        return f"Hello, {name}!"

    steps = restate.Service("Steps")

    @steps.handler()
    async def three(ctx: Any, name: str) -> int:
        total = 0
        for step in ("one", "two", "three"):
            total += await ctx.run_typed(step, _step)
        return total

    sleeper = restate.Service("Sleeper")

    @sleeper.handler()
    async def nap(ctx: Any, name: str) -> str:
        await ctx.sleep(timedelta(milliseconds=100))
        return name

    counter = restate.VirtualObject("Counter")

    @counter.handler()
    async def add(ctx: Any, delta: int) -> int:
        count: int = await ctx.get("count", type_hint=int) or 0
        ctx.set("count", count + delta)
        return count + delta

    flow = restate.Workflow("Flow")

    @flow.main()
    async def run(ctx: Any, name: str) -> str:
        ctx.set("stage", "started")
        total = await ctx.run_typed("work", _step)
        ctx.set("stage", "done")
        return f"{name}:{total}"

    return restate.app(services=[greeter, steps, sleeper, counter, flow])
