"""Services of the web console tests (served by ``python -m sdk``): a handler that sleeps (to be
cancelled from the console), a virtual object with steps and state (its journal is a timeline;
its state is edited from the console) that calls another service, a step that keeps failing
(retries), and the core counter."""

from __future__ import annotations

from datetime import timedelta

import sdk as restate
from tests.e2e.apps.core import counter, greet, greeter

naps = restate.Service("Naps")


@naps.handler()
async def nap(ctx: restate.Context, seconds: int) -> str:
    await ctx.sleep(timedelta(seconds=seconds), name="nap")
    return "rested"


stubborn = restate.Service(
    "Stubborn",
    invocation_retry_policy=restate.InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=50),
        exponentiation_factor=2.0,
        max_interval=timedelta(seconds=1),
    ),
)


def _unreachable() -> str:
    raise ConnectionError("the warehouse is unreachable")


@stubborn.handler()
async def fetch(ctx: restate.Context) -> str:
    """A step that always fails: the invocation backs off and retries until it is killed."""
    return await ctx.run_typed("fetch stock", _unreachable)


notes = restate.VirtualObject("Notes")


@notes.handler()
async def write(ctx: restate.ObjectContext, text: str) -> str:
    """Two named steps, a call to the greeter, then the note is kept in state "last"."""
    upper = await ctx.run_typed("shout", lambda: text.upper())
    length = await ctx.run_typed("measure", lambda: len(text))
    greeting = await ctx.service_call(greet, text)
    ctx.set("last", text)
    return f"{upper} ({length}) {greeting}"


@notes.handler()
async def draft(ctx: restate.ObjectContext, text: str) -> str:
    """A step, a call and a state write, then a call to a long nap: a journal to look at while
    it waits, and a callee that links back to it."""
    upper = await ctx.run_typed("shout", lambda: text.upper())
    greeting = await ctx.service_call(greet, text)
    ctx.set("draft", text)
    rested = await ctx.service_call(nap, 600)
    return f"{upper} {greeting} {rested}"


@notes.handler(kind="shared")
async def last(ctx: restate.ObjectSharedContext) -> str | None:
    return await ctx.get("last", type_hint=str)


app = restate.app(services=[greeter, counter, naps, notes, stubborn])
