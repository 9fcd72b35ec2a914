"""Store keys (DESIGN §5): 2-byte kind, 2-byte partition, then the kind's fields.

Integers are big-endian and strings length-prefixed, so a prefix scan returns keys in order
(timers by wake time, inbox by sequence, journal by index). Retired kinds stay reserved.
"""

from __future__ import annotations

import functools
import struct
from enum import IntEnum


class Kind(IntEnum):
    FSM = 1
    STATUS = 2
    JOURNAL = 3
    STATE = 4
    LOCK = 5
    INBOX = 6
    TIMER = 7
    OUTBOX = 8  # reserved: cross-partition messages
    PROMISE = 9  # reserved: workflow promises
    DEDUP = 10  # reserved: per-producer sequence watermarks
    PATCHES = 11  # per object: the state patches decided lately (a repeated record is dropped)


# A string field is prefixed by its u16 length; the edges keep keys and names far below this
# (NodeConfig.max_key_bytes), and apply turns a KeyTooLong that still gets here into the failure
# of one invocation (DESIGN §11).
MAX_TEXT_BYTES = 0xFFFF


class KeyTooLong(ValueError):
    """A string field of a store key is longer than its 2-byte length prefix can say."""


def _encode_text(value: str) -> bytes:
    encoded = value.encode()
    if len(encoded) > MAX_TEXT_BYTES:
        raise KeyTooLong(f"a key or name of {len(encoded)} bytes exceeds {MAX_TEXT_BYTES} bytes")
    return struct.pack(">H", len(encoded)) + encoded


# The same few names (an invocation's id, its service and key) go into a dozen keys while one
# invocation is applied: encoding them was the largest single cost of apply (pp_bench). Only
# short strings are kept, so the cache stays small (about 4096 × 130 bytes).
_encode_short_text = functools.lru_cache(maxsize=4096)(_encode_text)


def _text(value: str) -> bytes:
    if len(value) <= 128:
        return _encode_short_text(value)
    return _encode_text(value)


def partition_prefix(kind: Kind, partition: int) -> bytes:
    return struct.pack(">HH", kind, partition)


def partition_of_key(key: bytes) -> int:
    """The partition a store key belongs to (every key starts with its kind and partition)."""
    (partition,) = struct.unpack_from(">H", key, 2)
    return int(partition)


def fsm_key(partition: int) -> bytes:
    return partition_prefix(Kind.FSM, partition)


def status_key(partition: int, invocation_id: str) -> bytes:
    return partition_prefix(Kind.STATUS, partition) + _text(invocation_id)


def journal_prefix(partition: int, invocation_id: str) -> bytes:
    return partition_prefix(Kind.JOURNAL, partition) + _text(invocation_id)


def journal_key(partition: int, invocation_id: str, index: int) -> bytes:
    return journal_prefix(partition, invocation_id) + struct.pack(">I", index)


def state_prefix(partition: int, service: str, key: str) -> bytes:
    return partition_prefix(Kind.STATE, partition) + _text(service) + _text(key)


def state_key(partition: int, service: str, key: str, name: str) -> bytes:
    return state_prefix(partition, service, key) + _text(name)


def state_name_of(key: bytes, prefix: bytes) -> str:
    """The state key name of a full state key whose object prefix is ``prefix``."""
    (length,) = struct.unpack_from(">H", key, len(prefix))
    start = len(prefix) + 2
    return key[start : start + length].decode()


def lock_key(partition: int, service: str, key: str) -> bytes:
    return partition_prefix(Kind.LOCK, partition) + _text(service) + _text(key)


def inbox_prefix(partition: int, service: str, key: str) -> bytes:
    return partition_prefix(Kind.INBOX, partition) + _text(service) + _text(key)


def inbox_key(partition: int, service: str, key: str, seq: int) -> bytes:
    return inbox_prefix(partition, service, key) + struct.pack(">Q", seq)


def inbox_seq_of(key: bytes) -> int:
    """The sequence number of a full inbox key (its last 8 bytes)."""
    (seq,) = struct.unpack_from(">Q", key, len(key) - 8)
    return int(seq)


def timer_key(partition: int, wake_ms: int, timer_id: str) -> bytes:
    return partition_prefix(Kind.TIMER, partition) + struct.pack(">Q", wake_ms) + _text(timer_id)


def parse_timer_key(key: bytes) -> tuple[int, str]:
    """(wake_ms, timer_id) of a timer key."""
    (wake_ms,) = struct.unpack_from(">Q", key, 4)
    (length,) = struct.unpack_from(">H", key, 12)
    return wake_ms, key[14 : 14 + length].decode()


def outbox_key(partition: int, seq: int) -> bytes:
    return partition_prefix(Kind.OUTBOX, partition) + struct.pack(">Q", seq)


def outbox_seq_of(key: bytes) -> int:
    (seq,) = struct.unpack_from(">Q", key, 4)
    return int(seq)


def dedup_key(partition: int, producer_id: str) -> bytes:
    return partition_prefix(Kind.DEDUP, partition) + _text(producer_id)


def patches_key(partition: int, service: str, key: str) -> bytes:
    return partition_prefix(Kind.PATCHES, partition) + _text(service) + _text(key)


def promise_prefix(partition: int, service: str, key: str) -> bytes:
    return partition_prefix(Kind.PROMISE, partition) + _text(service) + _text(key)


def promise_key(partition: int, service: str, key: str, name: str) -> bytes:
    return promise_prefix(partition, service, key) + _text(name)


# -- reading keys back (SQL introspection lists rows by prefix and needs their fields)


def _text_at(key: bytes, offset: int) -> tuple[str, int]:
    """The length-prefixed string at ``offset`` and the offset after it."""
    (length,) = struct.unpack_from(">H", key, offset)
    start = offset + 2
    return key[start : start + length].decode(), start + length


def parse_status_key(key: bytes) -> str:
    """The invocation id of a status key."""
    return _text_at(key, 4)[0]


def parse_journal_key(key: bytes) -> tuple[str, int]:
    """(invocation_id, index) of a journal key."""
    invocation_id, after = _text_at(key, 4)
    (index,) = struct.unpack_from(">I", key, after)
    return invocation_id, int(index)


def _object_of(key: bytes) -> tuple[str, str, int]:
    service, after = _text_at(key, 4)
    object_key, after = _text_at(key, after)
    return service, object_key, after


def parse_state_key(key: bytes) -> tuple[str, str, str]:
    """(service, key, name) of a state key."""
    service, object_key, after = _object_of(key)
    return service, object_key, _text_at(key, after)[0]


def parse_promise_key(key: bytes) -> tuple[str, str, str]:
    """(service, key, name) of a promise key."""
    return parse_state_key(key)  # the same layout: kind, partition, service, key, name


def parse_inbox_key(key: bytes) -> tuple[str, str, int]:
    """(service, key, seq) of an inbox key."""
    service, object_key, after = _object_of(key)
    (seq,) = struct.unpack_from(">Q", key, after)
    return service, object_key, int(seq)
