"""State (seed page: "State management": get, set, clear).

``Counter`` is a virtual object: each key has its own state, and its exclusive handlers run one
at a time per key, so ``add`` never loses an update.

    cairn dev examples.state:app
    curl -X POST http://127.0.0.1:8080/Counter/visits/add -d 2
    cairn state get Counter visits
"""

from __future__ import annotations

import sdk as restate

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    total = (await ctx.get("total", type_hint=int) or 0) + delta
    ctx.set("total", total)
    return total


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("total", type_hint=int) or 0


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    ctx.clear("total")


app = restate.app(services=[counter])
