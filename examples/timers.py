"""Durable timers and timeouts (seed page: "Durable timers and timeouts").

``Reminders/remind`` sleeps an hour, durably: the handler suspends and costs nothing meanwhile.
``Reminders/first_of`` races a call against a timer (``select``): a timeout is just a sleep.

    cairn dev examples.timers:app
    curl -X POST http://127.0.0.1:8080/Reminders/remind/send -d '"tea"'
"""

from __future__ import annotations

from datetime import timedelta

import sdk as restate

reminders = restate.Service("Reminders")
slow = restate.Service("Slow")


@reminders.handler()
async def remind(ctx: restate.Context, what: str) -> str:
    await ctx.sleep(timedelta(hours=1))
    return f"time for {what}"


@slow.handler()
async def answer(ctx: restate.Context, after_s: int) -> str:
    await ctx.sleep(timedelta(seconds=after_s))
    return "answered"


@reminders.handler()
async def first_of(ctx: restate.Context, after_s: int) -> str:
    """The slow answer, unless a 5-minute timer fires first."""
    match await restate.select(
        result=ctx.service_call(answer, arg=after_s),
        timeout=ctx.sleep(timedelta(minutes=5)),
    ):
        case ["result", result]:
            return str(result)
        case _:
            return "timed out"


app = restate.app(services=[reminders, slow])
