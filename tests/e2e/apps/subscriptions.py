"""Handlers fed by Kafka subscriptions in the end-to-end tests (served by ``python -m sdk``)."""

from __future__ import annotations

import asyncio
from typing import Any

import sdk as restate

ledger = restate.VirtualObject("Ledger")


@ledger.handler()
async def append(ctx: restate.ObjectContext, event: dict[str, Any]) -> int:
    """Append the event's sequence number to this key's list (exclusive: one at a time, in the
    order the events were consumed)."""
    seqs = await ctx.get("seqs", type_hint=list[int]) or []
    seqs.append(int(event["seq"]))
    ctx.set("seqs", seqs)
    return len(seqs)


@ledger.handler(kind="shared")
async def seqs(ctx: restate.ObjectSharedContext) -> list[int]:
    return await ctx.get("seqs", type_hint=list[int]) or []


echo = restate.Service("Echo")


@echo.handler()
async def show(ctx: restate.Context, event: Any) -> dict[str, Any]:
    """An unkeyed sink: returns what it was given, headers included."""
    return {"event": event, "headers": ctx.request().headers}


slow = restate.Service("Slow")


@slow.handler()
async def work(ctx: restate.Context, event: Any) -> Any:
    """A slow sink: holds its invocation open for a while (back-pressure tests)."""
    await asyncio.sleep(0.2)
    return event


@echo.handler(
    accept="*/*",
    content_type="application/octet-stream",
    input_serde=restate.serde.BytesSerde(),
    output_serde=restate.serde.BytesSerde(),
)
async def raw(ctx: restate.Context, data: bytes) -> bytes:
    """A raw sink: gets the record's value as it is (not JSON-checked) and returns it reversed."""
    return data[::-1]


onboarding = restate.Workflow("Onboarding")


@onboarding.main()
async def run(ctx: restate.WorkflowContext, event: dict[str, Any]) -> dict[str, Any]:
    ctx.set("name", event["name"])
    return {"key": ctx.key(), "name": event["name"], "headers": ctx.request().headers}


app = restate.app(services=[ledger, echo, slow, onboarding])
