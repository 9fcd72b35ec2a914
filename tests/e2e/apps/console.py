"""Services of the web console tests (served by ``python -m sdk``): a handler that sleeps (to be
cancelled from the console), a virtual object with steps and state (its journal is a timeline;
its state is edited from the console) that calls another service, and the core counter."""

from __future__ import annotations

from datetime import timedelta

import sdk as restate
from tests.e2e.apps.core import counter, greet, greeter

naps = restate.Service("Naps")


@naps.handler()
async def nap(ctx: restate.Context, seconds: int) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "rested"


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
    """Steps, a call and a state write, then a long sleep: a journal to look at while it waits."""
    upper = await ctx.run_typed("shout", lambda: text.upper())
    greeting = await ctx.service_call(greet, text)
    ctx.set("draft", text)
    await ctx.sleep(timedelta(minutes=10), name="pause")
    return f"{upper} {greeting}"


@notes.handler(kind="shared")
async def last(ctx: restate.ObjectSharedContext) -> str | None:
    return await ctx.get("last", type_hint=str)


app = restate.app(services=[greeter, counter, naps, notes])
