"""Which invocations are pinned to which deployment.

``pinned_pairs_of`` reads one partition of this node's store; ``PinnedInvocations`` answers for
the whole cluster: each partition from this store when this node applies it, else from one of
its replicas (the forwarded read ``pinned``, on the internal port: README "A cluster"). A node of
a cluster applies only its replicas' partitions, and rows it kept from partitions it no longer
applies are stale, so the local store alone would give partial, stale counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

from partition_processor import keys
from partition_processor.tables import KeyValueReader, decode_status
from partition_processor.values import InvocationStatus


def pinned_pairs_of(store: KeyValueReader, partition: int) -> list[tuple[str, str]]:
    """(invocation id, deployment id) of the unfinished pinned invocations of ``partition``."""
    pairs = []
    for _, raw in store.scan(keys.partition_prefix(keys.Kind.STATUS, partition)):
        status = decode_status(raw)
        if status.phase != "completed" and status.deployment_id is not None:
            pairs.append((status.invocation_id, status.deployment_id))
    return pairs


PinnedPairs = Callable[[], Awaitable[list[tuple[str, str]]]]


async def pinned_counts_of(pairs: PinnedPairs) -> Counter[str]:
    """How many unfinished invocations are pinned to each deployment."""
    return Counter(deployment for _, deployment in await pairs())


async def pinned_ids_of(pairs: PinnedPairs, deployment_id: str) -> list[str]:
    """The ids of the unfinished invocations pinned to ``deployment_id``."""
    return [invocation for invocation, deployment in await pairs() if deployment == deployment_id]


def unfinished(store: KeyValueReader, partitions: int) -> Iterator[InvocationStatus]:
    """Every invocation not completed yet, in store order."""
    for partition in range(partitions):
        for _, raw in store.scan(keys.partition_prefix(keys.Kind.STATUS, partition)):
            status = decode_status(raw)
            if status.phase != "completed":
                yield status
