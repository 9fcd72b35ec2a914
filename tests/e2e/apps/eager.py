"""A virtual object whose reads the runtime may answer eagerly (tests/e2e/test_eager_state.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import sdk as restate

FAST_RETRIES = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=50), max_interval=timedelta(milliseconds=200)
)

# Attempts per invocation id, in this endpoint process: the first attempt of `probe` fails after
# its reads and writes are journaled, so the retry replays them.
_attempts: dict[str, int] = {}

box = restate.VirtualObject("Box", invocation_retry_policy=FAST_RETRIES)


@box.handler()
async def fill(ctx: restate.ObjectContext, count: int) -> None:
    for i in range(count):
        ctx.set(f"k{i}", "v" * 40)


@box.handler()
async def probe(ctx: restate.ObjectContext) -> dict[str, Any]:
    first = await ctx.get("k0", type_hint=str)
    last = await ctx.get("k4", type_hint=str)
    missing = await ctx.get("nope", type_hint=str)
    keys = await ctx.state_keys()
    ctx.set("x", 1)
    keys_with_x = await ctx.state_keys()
    x = await ctx.get("x", type_hint=int)
    attempt = _attempts[ctx.request().id] = _attempts.get(ctx.request().id, 0) + 1
    if attempt == 1:
        raise RuntimeError("the first attempt fails after its reads and writes")
    again = await ctx.get("x", type_hint=int)
    ctx.clear("x")
    cleared = await ctx.get("x", type_hint=int)
    ctx.clear_all()
    return {
        "first": first and len(first),
        "last": last and len(last),
        "missing": missing,
        "keys": list(keys),
        "keys_with_x": list(keys_with_x),
        "x": x,
        "again": again,
        "cleared": cleared,
        "keys_after": list(await ctx.state_keys()),
        "attempts": attempt,
    }


@box.handler()
async def writes(ctx: restate.ObjectContext, pause_ms: int) -> int:
    """A read, two writes apart in time, and the output: nothing here waits for the log."""
    count = await ctx.get("n", type_hint=int) or 0
    ctx.set("n", count + 1)
    await asyncio.sleep(pause_ms / 1000)  # not a context action: the first set is sent alone
    ctx.set("m", count)
    return count + 1


@box.handler(kind="shared")
async def peek(ctx: restate.ObjectSharedContext) -> list[str]:
    return list(await ctx.state_keys())


app = restate.app(services=[box])
