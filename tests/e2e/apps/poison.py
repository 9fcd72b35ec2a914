"""Handlers that try to poison a partition (served by ``python -m sdk``; tests/e2e/test_poison)."""

from __future__ import annotations

from datetime import timedelta

import sdk as restate

poison = restate.Service(
    "Poison",
    # Steep enough that factor ** (attempt - 1) overflows a float by the third retry.
    invocation_retry_policy=restate.InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=1),
        exponentiation_factor=1e300,
        max_interval=timedelta(milliseconds=20),
        max_attempts=6,
    ),
)


@poison.handler()
async def long_key_call(ctx: restate.Context, length: int) -> str:
    """Calls an object with a key longer than a store key's 2-byte length prefix."""
    raw = await ctx.generic_call("Counter", "add", b"1", key="k" * length)
    return raw.decode()


@poison.handler()
async def always_fails(ctx: restate.Context) -> str:
    raise ConnectionError("this handler never succeeds")


@poison.handler()
async def echo(ctx: restate.Context, value: str | None) -> int:
    return len(value or "")


@poison.handler()
async def echo_back(ctx: restate.Context, value: str) -> str:
    return value


@poison.handler()
async def big_output(ctx: restate.Context, size: int) -> str:
    return "x" * size


@poison.handler()
async def big_run(ctx: restate.Context, size: int) -> int:
    value = await ctx.run_typed("big", lambda: "x" * size)
    return len(value)


@poison.handler()
async def wait_forever(ctx: restate.Context) -> str:
    """Waits for an awakeable nobody resolves (tests/e2e/test_totality fails it from the log)."""
    _, never = ctx.awakeable(type_hint=str)
    return await never


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    count = await ctx.get("count", type_hint=int) or 0
    ctx.set("count", count + delta)
    return count + delta


@counter.handler()
async def big_state(ctx: restate.ObjectContext, size: int) -> str:
    ctx.set("big", "x" * size)
    return "stored"


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


app = restate.app([poison, counter])
