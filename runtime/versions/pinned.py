"""Which invocations are pinned to which deployment, read from this node's partition stores.

One function per question, so that a cluster can answer them by fanning out to every node
(placement) without the callers changing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from partition_processor import keys
from partition_processor.tables import KeyValueReader, decode_status
from partition_processor.values import InvocationStatus


def unfinished(store: KeyValueReader, partitions: int) -> Iterator[InvocationStatus]:
    """Every invocation not completed yet, in store order."""
    for partition in range(partitions):
        for _, raw in store.scan(keys.partition_prefix(keys.Kind.STATUS, partition)):
            status = decode_status(raw)
            if status.phase != "completed":
                yield status


def pinned_counts(store: KeyValueReader, partitions: int) -> Counter[str]:
    """How many unfinished invocations are pinned to each deployment."""
    return Counter(
        s.deployment_id for s in unfinished(store, partitions) if s.deployment_id is not None
    )


def pinned_to(store: KeyValueReader, partitions: int, deployment_id: str) -> list[str]:
    """The ids of the unfinished invocations pinned to ``deployment_id``."""
    return [
        s.invocation_id for s in unfinished(store, partitions) if s.deployment_id == deployment_id
    ]
