"""Checks that every partition of a node still serves: exact counts on keys covering them all.

Shared by the suites that throw something at a node (poison input, unapplicable records) and
then must show that no partition stalled.
"""

from __future__ import annotations

import asyncio
import uuid

from partition_processor.ids import object_partition_key, partition_of
from tests.e2e.harness import Client


def counter_keys_on_every_partition(partitions: int) -> list[str]:
    """Fresh Counter keys, two on each of ``partitions`` partitions."""
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    while any(len(keys) < 2 for keys in found.values()):
        key = uuid.uuid4().hex[:12]
        partition = partition_of(object_partition_key("Counter", key), partitions)
        if len(found[partition]) < 2:
            found[partition].append(key)
    return [key for keys in found.values() for key in keys]


async def every_partition_serves(client: Client, partitions: int, rounds: int = 3) -> None:
    """Concurrent increments on two fresh keys of every partition; each count is exact."""
    keys = counter_keys_on_every_partition(partitions)

    async def add(key: str) -> None:
        response = await client.call(f"/Counter/{key}/add", 1)
        assert response.status == 200, response.body

    for _ in range(rounds):
        await asyncio.gather(*(add(key) for key in keys))
    for key in keys:
        response = await client.call(f"/Counter/{key}/get")
        assert (response.status, response.json()) == (200, rounds), key
