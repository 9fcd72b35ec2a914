"""The endpoint of ``benchmarks/suspended.py``: handlers that wait on an awakeable."""

from __future__ import annotations

from datetime import timedelta

import sdk as restate

waiter = restate.Service("Waiter", inactivity_timeout=timedelta(milliseconds=100))


@waiter.handler()
async def wait(ctx: restate.Context) -> str:
    _, released = ctx.awakeable(type_hint=str)
    return await released


app = restate.app(services=[waiter])
