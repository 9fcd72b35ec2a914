"""Frames of multiplexed attempts (proto/endpoint.proto, "Multiplexed attempts"): hand-written,
shared by the runtime and the SDK so that both split by the same size rule.

``RuntimeFrames`` and ``SdkFrames`` have the same layout (a repeated frame: the attempt id, its
messages, two flags), so one encoder writes both. It works on messages already serialized: each
is serialized once, when it is queued, and copied into its frame as bytes (building the frames as
protobuf objects would copy every message again, and the node's CPU per message is what this
stream exists to save). The bytes are exactly what protobuf would write for the same frames.
"""

from __future__ import annotations

# Wire types (protobuf encoding): field number << 3 | 0 (varint) or 2 (length-delimited).
_FRAMES_TAG = b"\x0a"  # Frames.frames = 1
_ATTEMPT_TAG = b"\x08"  # Frame.attempt = 1
_MESSAGE_TAG = b"\x12"  # Frame.messages = 2
# Frame field 3 (close / end) and 4 (abandon), as true.
FLAG_3 = b"\x18\x01"
FLAG_4 = b"\x20\x01"

# What a message costs in a frame beyond its bytes (tag, length up to 5 bytes), and what a frame
# costs in a Frames message beyond its messages (tag, length, attempt id up to 5 bytes, flags):
# counted at their largest, so a gRPC message is never over the limit.
_PER_MESSAGE_BYTES = 6
_PER_FRAME_BYTES = 16


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def fits(size: int, limit_bytes: int) -> bool:
    """Whether a message of ``size`` bytes can travel alone in a frame under ``limit_bytes``."""
    return size + _PER_MESSAGE_BYTES + _PER_FRAME_BYTES <= limit_bytes


class _Frame:
    __slots__ = ("flags", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.flags = b""


class FrameOutbox:
    """The frames queued since the last write, per attempt in the order they were queued;
    ``take`` encodes them into as few gRPC messages as ``limit_bytes`` allows."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._frames: dict[int, _Frame] = {}

    def __bool__(self) -> bool:
        return bool(self._frames)

    def attempts(self) -> list[int]:
        return list(self._frames)

    def queued_bytes(self, attempt: int) -> int:
        frame = self._frames.get(attempt)
        return 0 if frame is None else frame.size

    def open(self, attempt: int) -> _Frame:
        """The attempt's frame, its place reserved: frames leave in the order of their first
        ``open``, ``add`` or ``flag`` (the runtime opens attempts in id order, and the endpoint
        takes an unknown id at or below the highest it has seen for one that ended)."""
        frame = self._frames.get(attempt)
        if frame is None:
            frame = self._frames[attempt] = _Frame()
        return frame

    def add(self, attempt: int, message: bytes) -> None:
        """Queue a serialized message (the caller checked it ``fits``)."""
        frame = self.open(attempt)
        frame.parts.append(message)
        frame.size += len(message) + _PER_MESSAGE_BYTES

    def flag(self, attempt: int, flag: bytes) -> None:
        """Set ``flag`` (FLAG_3 or FLAG_4) on the attempt's frame: it follows its messages."""
        frame = self.open(attempt)
        if flag not in frame.flags:
            frame.flags += flag

    def take(self) -> list[bytes]:
        """Everything queued, as encoded Frames messages, each under the limit (a frame too
        large for one is split into several of the same attempt, the flags on the last)."""
        frames, self._frames = self._frames, {}
        out: list[bytes] = []
        current: list[bytes] = []
        size = 0
        for attempt, frame in frames.items():
            head = _ATTEMPT_TAG + _varint(attempt)
            body: list[bytes] = [head]
            body_size = _PER_FRAME_BYTES
            for part in frame.parts:
                cost = len(part) + _PER_MESSAGE_BYTES
                if size + body_size + cost > self.limit_bytes and (len(body) > 1 or current):
                    # What is gathered so far goes out first (this attempt's part of it as a
                    # frame without flags: more of it follows).
                    if len(body) > 1:
                        current.append(_encoded_frame(body))
                    out.append(b"".join(current))
                    current, size = [], 0
                    body, body_size = [head], _PER_FRAME_BYTES
                body.append(_MESSAGE_TAG + _varint(len(part)))
                body.append(part)
                body_size += cost
            body.append(frame.flags)
            current.append(_encoded_frame(body))
            size += body_size
        if current:
            out.append(b"".join(current))
        return out


def _encoded_frame(body: list[bytes]) -> bytes:
    encoded = b"".join(body)
    return _FRAMES_TAG + _varint(len(encoded)) + encoded
