"""Users' Kafka topics in tests: create one, produce events to it (a real aiokafka producer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

Event = tuple[bytes | None, bytes, Sequence[tuple[str, bytes]]]


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, events: Sequence[Event]) -> list[tuple[int, int]]:
    """Send ``(key, value, headers)`` events in order; returns each one's (partition, offset).

    The test broker has no idempotent producer (DESIGN §10); acks=all, and one request in flight
    per partition keeps each key's events in the order given.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=list(headers))
            for key, value, headers in events
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]
