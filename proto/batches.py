"""Packing stream messages into batches (proto/endpoint.proto, "Batches"): hand-written, shared
by the runtime and the SDK so that both split a batch by the same size rule.

A batch is one gRPC message, so it must stay under the stream's message limit: ``pack`` starts a
new batch before a message would take the current one past it. A message alone over the limit is
sent as itself (gRPC refuses it as it did before batches: RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf.message import Message

from proto import endpoint_pb2 as pb

M = TypeVar("M", bound=Message)

# What a message costs inside a batch beyond its own bytes: the repeated field's tag (1 byte) and
# its length (a varint, at most 5 bytes below 4 GiB); and what the batch itself adds around them
# (the oneof field's tag and length). Counted at their largest: a batch is never over the limit.
_PER_MESSAGE_BYTES = 6
_BATCH_BYTES = 6


def pack(messages: Sequence[M], limit_bytes: int, wrap: Callable[[list[M]], M]) -> list[M]:
    """``messages`` in order, as few gRPC messages as ``limit_bytes`` allows: a run of several is
    ``wrap``-ped into one batch, a run of one is sent as itself."""
    if len(messages) == 1:
        return [messages[0]]
    packed: list[M] = []
    group: list[M] = []
    size = _BATCH_BYTES
    for message in messages:
        cost = message.ByteSize() + _PER_MESSAGE_BYTES
        if group and size + cost > limit_bytes:
            packed.append(group[0] if len(group) == 1 else wrap(group))
            group, size = [], _BATCH_BYTES
        group.append(message)
        size += cost
    if group:
        packed.append(group[0] if len(group) == 1 else wrap(group))
    return packed


def sdk_batch(messages: list[pb.SdkMessage]) -> pb.SdkMessage:
    return pb.SdkMessage(batch=pb.SdkBatch(messages=messages))


def runtime_batch(messages: list[pb.RuntimeMessage]) -> pb.RuntimeMessage:
    return pb.RuntimeMessage(batch=pb.RuntimeBatch(messages=messages))
