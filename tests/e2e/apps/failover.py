"""Services of the failover end-to-end tests (served by ``python -m sdk``)."""

from __future__ import annotations

import sdk as restate
from tests.e2e.apps.effects import wait_for_gate

tally = restate.VirtualObject("Tally")


@tally.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    count = await ctx.get("count", type_hint=int) or 0
    ctx.set("count", count + delta)
    return count + delta


@tally.handler()
async def add_at_gate(ctx: restate.ObjectContext, path: str) -> int:
    """Adds one once the test opens ``path``'s gate (the read before it is durable)."""
    count = await ctx.get("count", type_hint=int) or 0
    await ctx.run_typed("gate", wait_for_gate, path=path)
    ctx.set("count", count + 1)
    return count + 1


app = restate.app(services=[tally])
