"""Services of the bulk CLI tests (served by ``python -m sdk``): two services whose handler
sleeps as long as asked, so that invocations stay suspended until cancelled or killed."""

from __future__ import annotations

from datetime import timedelta

import sdk as restate

sleeper = restate.Service("Sleeper")
napper = restate.Service("Napper")


@sleeper.handler()
async def rest(ctx: restate.Context, millis: int) -> str:
    await ctx.sleep(timedelta(milliseconds=millis))
    return "rested"


@napper.handler(name="rest")
async def nap(ctx: restate.Context, millis: int) -> str:
    await ctx.sleep(timedelta(milliseconds=millis))
    return "napped"


app = restate.app(services=[sleeper, napper])
