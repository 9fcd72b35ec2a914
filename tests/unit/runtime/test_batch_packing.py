"""``proto.batches.pack``, the size rule both the runtime and the SDK split batches by: order
kept, a run of one sent as itself, no batch over the limit (a gRPC message over it is refused)."""

from __future__ import annotations

from proto import endpoint_pb2 as pb
from proto.batches import pack, runtime_batch, sdk_batch


def _entry(index: int, size: int) -> pb.RuntimeMessage:
    command = pb.JournalCommand(input=pb.InputCommand(value=b"x" * size))
    return pb.RuntimeMessage(replay_entry=pb.JournalEntry(index=index, command=command))


def _flat(messages: list[pb.RuntimeMessage]) -> list[pb.RuntimeMessage]:
    return [
        inner
        for message in messages
        for inner in (message.batch.messages if message.HasField("batch") else [message])
    ]


def test_what_fits_goes_in_one_batch_in_order() -> None:
    messages = [pb.RuntimeMessage(start=pb.Start(known_entries=3))] + [
        _entry(i, 10) for i in range(3)
    ]
    [packed] = pack(messages, 10_000, runtime_batch)
    assert list(packed.batch.messages) == messages


def test_one_message_is_sent_as_itself() -> None:
    only = pb.SdkMessage(end=pb.End())
    assert pack([only], 10, sdk_batch) == [only]


def test_a_batch_is_split_below_the_limit() -> None:
    limit = 1_000
    messages = [_entry(i, size) for i, size in enumerate([300, 300, 300, 900, 10, 10, 2_000, 5])]
    packed = pack(messages, limit, runtime_batch)
    assert _flat(packed) == messages  # nothing lost, nothing reordered
    for message in packed:
        # (The one message alone over the limit is sent as itself: gRPC refuses it as before.)
        if message.HasField("batch"):
            assert message.ByteSize() <= limit
    assert [len(m.batch.messages) if m.HasField("batch") else 1 for m in packed] == [3, 3, 1, 1]
