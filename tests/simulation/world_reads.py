"""What the simulation's checks read from a ``World``: its stores, rows and a replayed copy.

Kept apart from ``world.py`` (which plays the cluster's surroundings) because none of it drives
the run: these only look at the result.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from partition_processor import keys
from partition_processor.ids import object_partition_key, partition_of
from partition_processor.processor import ApplyStats, LogEntry, PartitionProcessor
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import decode_status
from partition_processor.values import InvocationStatus
from tests.simulation.oracle import PARTITIONS


class _HasStore(Protocol):
    @property
    def store(self) -> MemoryStore: ...


NodeT = TypeVar("NodeT", bound=_HasStore)


class WorldReads(Generic[NodeT]):
    """Read-only views of a world; ``World`` sets the attributes declared here."""

    seed: int
    logs: list[list[bytes]]
    nodes: list[NodeT]

    @property
    def store(self) -> MemoryStore:
        """The first node's store (all converge: the checks compare them)."""
        return self.nodes[0].store

    @staticmethod
    def object_partition(service: str, key: str) -> int:
        return partition_of(object_partition_key(service, key), PARTITIONS)

    def replayed(self) -> tuple[MemoryStore, ApplyStats]:
        """A follower's store: every partition's whole log applied in random batch sizes."""
        store = MemoryStore()
        stats = ApplyStats()
        chooser = random.Random(self.seed + 1)
        for p, log in enumerate(self.logs):
            processor = PartitionProcessor(store, p, "follower")
            lsn = 0
            while lsn < len(log):
                upto = min(len(log), lsn + chooser.randint(1, 8))
                stats += processor.apply_batch(
                    [LogEntry(i, log[i]) for i in range(lsn, upto)]
                ).stats
                lsn = upto
        return store, stats

    def statuses(self) -> Iterator[InvocationStatus]:
        for p in range(PARTITIONS):
            for _, raw in self.store.scan(keys.partition_prefix(keys.Kind.STATUS, p)):
                yield decode_status(raw)

    def rows(self, kind: keys.Kind) -> list[bytes]:
        return [
            key
            for p in range(PARTITIONS)
            for key, _ in self.store.scan(keys.partition_prefix(kind, p))
        ]

    def state(self, service: str, key: str, name: str) -> bytes | None:
        p = self.object_partition(service, key)
        return self.store.get(keys.state_key(p, service, key, name))
