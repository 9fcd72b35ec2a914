"""A cluster node's membership: the group that places the partitions' replicas, and telling the
other nodes that this one left."""

from __future__ import annotations

import asyncio
import logging

from runtime.config import NodeConfig
from runtime.log import LogError
from runtime.membership import Membership
from runtime.metadata import Registry
from runtime.worker.replicas import ReplicaWorkers

log = logging.getLogger(__name__)

# A stopping cluster node waits this long to say it left: past it (broker down) it stops anyway
# and the other nodes remove it after the node expiry.
_LEAVE_TIMEOUT_S = 5.0


def new_membership(
    config: NodeConfig, node_id: str, registry: Registry, workers: ReplicaWorkers
) -> Membership | None:
    """The node's membership of the cluster's group (None: not a cluster node)."""
    return (
        Membership(
            node_id=node_id,
            bootstrap=config.kafka_bootstrap,
            topic_prefix=config.kafka_topic_prefix,
            partitions=config.partitions,
            replication=config.replication,
            session_timeout_ms=config.cluster_session_timeout_ms,
            positions_interval_ms=config.applied_positions_interval_ms,
            registry=registry,
            workers=workers,
        )
        if config.cluster
        else None
    )


async def leave_cluster(registry: Registry, node_id: str) -> None:
    """Tell the cluster this node left (a stop that cannot say so expires later)."""
    try:
        await asyncio.wait_for(registry.leave(node_id), _LEAVE_TIMEOUT_S)
    except (LogError, TimeoutError) as exc:
        log.warning("could not publish that this node left the cluster: %r", exc)
