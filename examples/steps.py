"""Durable steps (seed page: "Durable steps").

``Payments/pay`` charges once per idempotency key, even if the handler is retried: the result of
``ctx.run_typed`` is journaled, and a retry replays it instead of running the step again.

    cairn dev examples.steps:app
    curl -X POST http://127.0.0.1:8080/Payments/pay -H 'idempotency-key: p1' -d '{"amount": 5}'
"""

from __future__ import annotations

import uuid
from typing import Any

import sdk as restate

payments = restate.Service("Payments")

# What the (pretend) payment provider was asked to do, per process: a real app calls an API.
CHARGES: list[dict[str, Any]] = []


async def charge(amount: int) -> str:
    transaction = uuid.uuid4().hex
    CHARGES.append({"transaction": transaction, "amount": amount})
    return transaction


@payments.handler()
async def pay(ctx: restate.Context, request: dict[str, Any]) -> dict[str, Any]:
    transaction = await ctx.run_typed("charge", charge, amount=request["amount"])
    # A random value drawn once and journaled: a replay sees the same one.
    receipt = str(ctx.uuid())
    return {"transaction": transaction, "receipt": receipt}


app = restate.app(services=[payments])
