"""Services of the core-engine end-to-end tests (served by ``python -m sdk``)."""

from __future__ import annotations

from datetime import timedelta

import sdk as restate
from tests.e2e.apps.effects import append_line, wait_for_gate

FAST_RETRIES = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=50),
    exponentiation_factor=2.0,
    max_interval=timedelta(milliseconds=500),
)

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello, {name}!"


steps = restate.Service("Steps", invocation_retry_policy=FAST_RETRIES)


@steps.handler()
async def three_steps(ctx: restate.Context, path: str) -> list[str]:
    """Three side effects on a file; between step two and three it waits for ``path.gate``."""
    one = await ctx.run_typed("one", append_line, path=path, line="one")
    two = await ctx.run_typed("two", append_line, path=path, line="two")
    await ctx.run_typed("gate", wait_for_gate, path=path)
    three = await ctx.run_typed("three", append_line, path=path, line="three")
    return [one, two, three]


_failures: dict[str, int] = {}


def _flaky(key: str) -> int:
    """Fails the first two times it is called for ``key``."""
    _failures[key] = _failures.get(key, 0) + 1
    if _failures[key] <= 2:
        raise ConnectionError(f"transient failure {_failures[key]} for {key}")
    return _failures[key]


@steps.handler()
async def flaky(ctx: restate.Context, key: str) -> str:
    calls = await ctx.run_typed("flaky", _flaky, key=key)
    return f"succeeded after {calls} calls"


@steps.handler()
async def flaky_in_place(ctx: restate.Context, key: str) -> str:
    options: restate.RunOptions[int] = restate.RunOptions(
        max_attempts=5, initial_retry_interval=timedelta(milliseconds=10)
    )
    calls = await ctx.run_typed("flaky", _flaky, options, key=key)
    return f"succeeded after {calls} calls"


@steps.handler()
async def teapot(ctx: restate.Context) -> str:
    raise restate.TerminalError("I'm a teapot", status_code=418)


_flips: dict[str, int] = {}


@steps.handler()
async def flip(ctx: restate.Context, key: str) -> str:
    """Changes its step order after the first attempt: a journal mismatch."""
    _flips[key] = _flips.get(key, 0) + 1
    if _flips[key] == 1:
        await ctx.run_typed("a", lambda: "a")
        raise ConnectionError("crash after step a")
    await ctx.run_typed("b", lambda: "b")
    return "wrong result"


@steps.handler()
async def determinism(ctx: restate.Context) -> dict[str, object]:
    """uuid/random/time are journaled or seeded: the same on the retry as on the first attempt."""
    values = {
        "uuid": str(ctx.uuid()),
        "random": ctx.random().random(),
        "time": await ctx.time(),
        "request_id": ctx.request().id,
    }
    seen = await ctx.run_typed("first-seen", lambda: values)
    key = ctx.request().id
    _flips[key] = _flips.get(key, 0) + 1
    if _flips[key] == 1:
        raise ConnectionError("retry me")
    return {"now": values, "first": seen}


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    count = await ctx.get("count", type_hint=int) or 0
    ctx.set("count", count + delta)
    return count + delta


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@counter.handler(kind="shared")
async def state(ctx: restate.ObjectSharedContext) -> dict[str, object]:
    names = await ctx.state_keys()
    return {name: await ctx.get(name) for name in sorted(names)}


@counter.handler()
async def put(ctx: restate.ObjectContext, entry: dict[str, object]) -> None:
    for name, value in entry.items():
        ctx.set(name, value)


@counter.handler()
async def clear(ctx: restate.ObjectContext, name: str) -> None:
    ctx.clear(name)


@counter.handler()
async def clear_all(ctx: restate.ObjectContext) -> None:
    ctx.clear_all()


@counter.handler()
async def hold(ctx: restate.ObjectContext) -> str:
    """Holds the key's lock until its awakeable (published in state "pending") is resolved."""
    awakeable_id, released = ctx.awakeable(type_hint=str)
    ctx.set("pending", awakeable_id)
    value = await released
    ctx.clear("pending")
    return value


app = restate.app(services=[greeter, steps, counter])
