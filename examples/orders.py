"""A handler fed from a Kafka topic (see README "Kafka subscriptions").

Every event on the topic ``orders`` is one invocation of ``Orders/place``; the record key is the
customer (the object key), so a customer's orders run one at a time, in the order they were
produced, each exactly once.

    cairn dev examples.orders:app --kafka-cluster my-cluster=127.0.0.1:9092
    curl -X POST http://127.0.0.1:9070/subscriptions -H 'content-type: application/json' \
      -d '{"source": "kafka://my-cluster/orders", "sink": "service://Orders/place",
           "options": {"auto.offset.reset": "earliest"}}'
    python -m examples.produce_orders --bootstrap 127.0.0.1:9092 --count 100
    curl -X POST http://127.0.0.1:8080/Orders/alice/history
"""

from __future__ import annotations

from typing import Any

import sdk as restate

orders = restate.VirtualObject("Orders")


@orders.handler()
async def place(ctx: restate.ObjectContext, order: dict[str, Any]) -> int:
    headers = ctx.request().headers
    history = await ctx.get("history", type_hint=list[dict[str, Any]]) or []
    history.append(
        {
            "item": order["item"],
            "amount": order["amount"],
            # where the event came from: the record's position in the topic
            "offset": f"{headers['x-kafka-topic']}/{headers['x-kafka-partition']}"
            f"/{headers['x-kafka-offset']}",
        }
    )
    ctx.set("history", history)
    return len(history)


@orders.handler(kind="shared")
async def history(ctx: restate.ObjectSharedContext) -> list[dict[str, Any]]:
    return await ctx.get("history", type_hint=list[dict[str, Any]]) or []


app = restate.app(services=[orders])
