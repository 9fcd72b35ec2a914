"""Frames of multiplexed attempts (proto/frames.py): the hand-encoded bytes are what protobuf
reads as RuntimeFrames / SdkFrames, in order per attempt, flags after the messages, and every
gRPC message stays under the limit (a frame too large for one is split, its flags on the last)."""

from __future__ import annotations

from proto import endpoint_pb2 as pb
from proto.frames import FLAG_3, FLAG_4, FrameOutbox, fits


def _notification(index: int, size: int = 0) -> pb.RuntimeMessage:
    completion = pb.Completion(value=b"x" * size)
    return pb.RuntimeMessage(notification=pb.Notification(index=index, completion=completion))


def _decoded(messages: list[bytes]) -> list[pb.RuntimeFrame]:
    frames: list[pb.RuntimeFrame] = []
    for data in messages:
        frames.extend(pb.RuntimeFrames.FromString(data).frames)
    return frames


def test_frames_of_several_attempts_travel_in_one_message_in_order() -> None:
    outbox = FrameOutbox(1 << 20)
    outbox.add(1, _notification(1).SerializeToString())
    outbox.add(2, _notification(7).SerializeToString())
    outbox.add(1, _notification(2).SerializeToString())
    outbox.flag(1, FLAG_3)
    outbox.flag(2, FLAG_4)
    outbox.flag(3, FLAG_4)  # a flag alone is a frame too
    messages = outbox.take()
    assert len(messages) == 1 and not outbox
    frames = _decoded(messages)
    assert [f.attempt for f in frames] == [1, 2, 3]
    assert [m.notification.index for m in frames[0].messages] == [1, 2]
    assert (frames[0].close, frames[0].abandon) == (True, False)
    assert [m.notification.index for m in frames[1].messages] == [7]
    assert (frames[1].close, frames[1].abandon) == (False, True)
    assert (len(frames[2].messages), frames[2].abandon) == (0, True)
    # The SDK's frames have the same layout: field 3 is SdkFrame.end.
    [sdk_frame] = pb.SdkFrames.FromString(_sdk_frames()).frames
    assert (sdk_frame.attempt, sdk_frame.end, len(sdk_frame.messages)) == (300, True, 1)


def _sdk_frames() -> bytes:
    outbox = FrameOutbox(1 << 20)
    outbox.add(300, pb.SdkMessage(end=pb.End()).SerializeToString())
    outbox.flag(300, FLAG_3)
    [data] = outbox.take()
    return data


def test_split_at_the_limit_keeps_each_attempts_order_and_flags_last() -> None:
    limit = 4096
    outbox = FrameOutbox(limit)
    for index in range(40):
        outbox.add(1 + index % 2, _notification(index, 300).SerializeToString())
    outbox.flag(1, FLAG_3)
    messages = outbox.take()
    assert len(messages) > 1
    assert all(len(data) <= limit for data in messages)
    frames = _decoded(messages)
    for attempt, expected in ((1, range(0, 40, 2)), (2, range(1, 40, 2))):
        own = [f for f in frames if f.attempt == attempt]
        indices = [m.notification.index for f in own for m in f.messages]
        assert indices == list(expected)
        assert [f.close for f in own] == [False] * (len(own) - 1) + [attempt == 1]


def test_a_message_that_fits_alone_fits_in_a_frame() -> None:
    limit = 1000
    sizes = range(900, 1000)
    fitting = [size for size in sizes if fits(size, limit)]
    assert fitting and len(fitting) < len(sizes)
    outbox = FrameOutbox(limit)
    size = limit
    while not fits(len(big := _notification(1, size).SerializeToString()), limit):
        size -= 1
    assert len(big) >= max(fitting) - 1  # the largest that fits, give or take a length byte
    outbox.add(123456, big)
    outbox.flag(123456, FLAG_4)
    [data] = outbox.take()
    assert len(data) <= limit
    [frame] = pb.RuntimeFrames.FromString(data).frames
    assert frame.attempt == 123456 and frame.abandon


def test_frames_leave_in_the_order_attempts_were_opened() -> None:
    outbox = FrameOutbox(1 << 20)
    outbox.open(1)
    outbox.open(2)
    outbox.add(2, _notification(2).SerializeToString())
    outbox.add(1, _notification(1).SerializeToString())
    outbox.open(1)  # (again: keeps what it holds)
    frames = _decoded(outbox.take())
    assert [(f.attempt, len(f.messages)) for f in frames] == [(1, 1), (2, 1)]
