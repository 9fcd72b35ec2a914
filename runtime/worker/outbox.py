"""Outbox shipping, sans-I/O: what to deliver to which partition (DESIGN §5).

Each message is appended to its target partition with ``Producer("partition-<p>", seq)``; the
receiver drops sequences it has seen, so shipping again after a crash or a leader change is
harmless (at-least-once shipping + idempotent apply = exactly once). Shipped rows are then
dropped with a ``TruncateOutbox`` record.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec

from partition_processor.commands import (
    Envelope,
    PartitionSource,
    ProducerDedup,
    encode_envelope,
)
from partition_processor.ids import InvalidInvocationId, parse_partition_key, partition_of
from partition_processor.tables import KeyValueReader, read_outbox


def producer_id(partition: int) -> str:
    return f"partition-{partition}"


class Shipment(msgspec.Struct, frozen=True):
    """Outbox rows up to ``upto_seq``, encoded per target partition."""

    by_target: dict[int, list[bytes]]
    upto_seq: int
    # rows no partition can take (seq, why): dropped with the others, counted by the driver
    unroutable: list[tuple[int, str]] = []


def plan_shipment(
    store: KeyValueReader, partition: int, partitions: int, after_seq: int, now_ms: int
) -> Shipment | None:
    """The outbox rows above ``after_seq`` as records for their partitions (None: nothing)."""
    rows = [(seq, m) for seq, m in read_outbox(store, partition) if seq > after_seq]
    if not rows:
        return None
    source = PartitionSource(partition)
    producer = producer_id(partition)
    by_target: dict[int, list[bytes]] = defaultdict(list)
    unroutable: list[tuple[int, str]] = []
    for seq, message in rows:
        try:
            target = partition_of(parse_partition_key(message.route), partitions)
        except InvalidInvocationId as exc:
            # Ids are checked where they enter, so this is a row no partition can take:
            # shipping it would fail forever, so it is truncated with the others.
            unroutable.append((seq, str(exc)))
            continue
        envelope = Envelope(source, now_ms, message.command, ProducerDedup(producer, seq))
        by_target[target].append(encode_envelope(envelope))
    return Shipment(dict(by_target), rows[-1][0], unroutable)
