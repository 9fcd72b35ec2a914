"""Partition keys and invocation ids (DESIGN §4).

An invocation id carries its partition key, so any node can route it without a lookup:
``inv_`` + 16 hex digits of the u64 partition key + 32 hex digits of a 128-bit uuid.
"""

from __future__ import annotations

import hashlib

PARTITION_KEY_BITS = 64
_ID_PREFIX = "inv_"
_ID_LENGTH = len(_ID_PREFIX) + 16 + 32


class InvalidInvocationId(ValueError):
    """The string is not a Cairn invocation id."""


def stable_hash64(*parts: str) -> int:
    """A 64-bit hash that is the same on every machine and run (never Python's ``hash()``)."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return int.from_bytes(digest.digest(), "big")


def stable_uuid128(*parts: str) -> bytes:
    """A deterministic 16-byte id (for idempotent calls and workflow runs)."""
    digest = hashlib.blake2b(digest_size=16, person=b"cairn-uuid")
    for part in parts:
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return digest.digest()


def object_partition_key(service: str, key: str) -> int:
    """Partition key of a virtual object / workflow instance: all its state lives there."""
    return stable_hash64("object", service, key)


def partition_of(partition_key: int, partitions: int) -> int:
    """Equal-width ranges of the u64 space over ``partitions`` partitions."""
    return (partition_key * partitions) >> PARTITION_KEY_BITS


def make_invocation_id(partition_key: int, uuid_bytes: bytes) -> str:
    """Build an id from its partition key and 16-byte uuid."""
    if len(uuid_bytes) != 16:
        raise ValueError("uuid must be 16 bytes")
    return f"{_ID_PREFIX}{partition_key:016x}{uuid_bytes.hex()}"


def parse_partition_key(invocation_id: str) -> int:
    """The partition key embedded in an invocation id."""
    if len(invocation_id) != _ID_LENGTH or not invocation_id.startswith(_ID_PREFIX):
        raise InvalidInvocationId(f"not an invocation id: {invocation_id!r}")
    try:
        int(invocation_id[len(_ID_PREFIX) :], 16)
        return int(invocation_id[len(_ID_PREFIX) : len(_ID_PREFIX) + 16], 16)
    except ValueError as exc:
        raise InvalidInvocationId(f"not an invocation id: {invocation_id!r}") from exc


def random_seed_of(invocation_id: str) -> int:
    """The seed the SDK uses for ``ctx.random()`` / ``ctx.uuid()``: fixed per invocation."""
    return stable_hash64("seed", invocation_id)
