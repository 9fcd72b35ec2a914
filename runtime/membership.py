"""Cluster membership in the metadata: heartbeats, and removing nodes that died (README "Kafka").

Every cluster node publishes its applied positions each ``interval_s`` (also its heartbeat). A
node that stops cleanly publishes that it left (``Registry.leave``); a node of which nothing was
read for ``expiry_s`` is removed by any live node (several may do it: a removal is idempotent).
A node that finds itself removed (it was paused past the expiry) joins again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from runtime.log import LogError
from runtime.metadata import Registry

log = logging.getLogger(__name__)


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
