"""A cluster node's membership (DESIGN §8): it joins the placement group, follows each new
placement with its replica workers, publishes how far it applied, and bounds trimming by what
the partition's replicas applied."""

from __future__ import annotations

import asyncio
import logging

from runtime.clock import now_ms
from runtime.cluster import GroupOwnership, PlacementAssignor
from runtime.log import LogError
from runtime.metadata import Registry
from runtime.placement import Placement
from runtime.supervisor import Supervisor
from runtime.worker.replicas import ReplicaWorkers

log = logging.getLogger(__name__)


class Membership:
    def __init__(
        self,
        *,
        node_id: str,
        bootstrap: str,
        topic_prefix: str,
        partitions: int,
        replication: int,
        session_timeout_ms: int,
        positions_interval_ms: int,
        registry: Registry,
        workers: ReplicaWorkers,
    ) -> None:
        self._node_id = node_id
        self._partitions = partitions
        self._positions_interval_ms = positions_interval_ms
        self._registry = registry
        self._workers = workers
        self._placed = asyncio.Event()
        self._ownership = GroupOwnership(
            bootstrap,
            f"{topic_prefix}.log",
            f"{topic_prefix}.leaders",
            self._placement_changed,
            PlacementAssignor(
                node_id,
                partitions=partitions,
                replication=replication,
                applied=lambda: workers.applied(partitions),
            ),
            on_revoked=workers.hand_over_all,
            session_timeout_ms=session_timeout_ms,
        )

    async def join(self, supervisor: Supervisor, *, publish_positions: bool) -> None:
        """Join the group; return once this node's first replicas have applied up to the log's
        tail as it was when they started."""
        await self._ownership.start(supervisor)
        await self._placed.wait()
        await asyncio.gather(*(w.synced.wait() for w in self._workers.by_partition.values()))
        if publish_positions:
            supervisor.spawn("applied-positions", self._publish_positions)

    async def leave(self) -> None:
        await self._ownership.stop()  # leaving the group moves the partitions at once

    async def _placement_changed(self, placement: Placement) -> None:
        await self._workers.follow(placement)
        self._placed.set()

    def trim_bound(self, partition: int) -> int | None:
        """Trim only below what every current replica of the partition has applied (as it
        last reported; None while one of them has not reported recently)."""
        placement = self._workers.placement
        if placement is None:
            return None
        since = now_ms() - 3 * self._positions_interval_ms
        return self._registry.lowest_applied(partition, since, placement.replicas[partition])

    async def _publish_positions(self) -> None:
        """Publish this node's applied positions when they moved (cluster with snapshots)."""
        published: list[int] = []
        while True:
            positions = self._workers.applied(self._partitions)
            if positions != published:
                try:
                    await self._registry.publish_positions(self._node_id, positions)
                    published = positions
                except LogError as exc:
                    log.warning("cannot publish applied positions: %s", exc)
            await asyncio.sleep(self._positions_interval_ms / 1000)
