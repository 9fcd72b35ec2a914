"""Produce order events to a Kafka topic for ``examples/orders.py``.

    python -m examples.produce_orders --bootstrap 127.0.0.1:9092 --topic orders --count 100

Creates the topic (4 partitions) if it does not exist. Each event's key is a customer, its value
the JSON order the handler receives.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

CUSTOMERS = ["alice", "bob", "carol", "dave"]


async def main(bootstrap: str, topic: str, count: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(count):
            customer = CUSTOMERS[i % len(CUSTOMERS)]
            order = {"item": f"item-{i}", "amount": i + 1}
            await producer.send(
                topic,
                json.dumps(order).encode(),
                key=customer.encode(),
                headers=[("source", b"produce_orders")],
            )
        await producer.flush()
    finally:
        await producer.stop()
    print(f"produced {count} orders to {topic}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.bootstrap, args.topic, args.count))
