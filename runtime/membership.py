"""A cluster node's membership (DESIGN §8).

Placement: the node joins the placement group, follows each new placement with its replica
workers, and bounds trimming by what the partition's replicas applied.

Heartbeats (README "Kafka"): every cluster node publishes its applied positions each
``interval_s`` (also its heartbeat). A node that stops cleanly publishes that it left
(``Registry.leave``); a node of which nothing was read for ``expiry_s`` is removed by any live
node (several may do it: a removal is idempotent). A node that finds itself removed (it was
paused past the expiry) joins again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

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

    async def join(self, supervisor: Supervisor) -> None:
        """Join the group; return once this node's first replicas have applied up to the log's
        tail as it was when they started."""
        await self._ownership.start(supervisor)
        await self._placed.wait()
        await asyncio.gather(*(w.synced.wait() for w in self._workers.by_partition.values()))

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


async def run_membership(
    registry: Registry,
    node_id: str,
    *,
    positions: Callable[[], list[int]],
    rejoin: Callable[[], Awaitable[None]],
    interval_s: float,
    expiry_s: float,
) -> None:
    """Heartbeat and expire peers forever (a supervised task of a cluster node)."""
    while True:
        try:
            if registry.has_left(node_id):
                log.warning("this node was removed from the cluster (silent too long): rejoining")
                await rejoin()
            await registry.publish_positions(node_id, positions())
            for peer in registry.expired(time.monotonic(), expiry_s):
                if peer == node_id:
                    continue
                log.info("node %s silent for over %.0f s: removed from the cluster", peer, expiry_s)
                await registry.leave(peer)
        except LogError as exc:
            log.warning("cannot publish cluster membership: %s", exc)
        await asyncio.sleep(interval_s)
