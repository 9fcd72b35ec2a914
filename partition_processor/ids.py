"""Partition keys and invocation ids (DESIGN §4).

An invocation id carries its partition key, so any node can route it without a lookup:
``inv_`` + 16 hex digits of the u64 partition key + 32 hex digits of a 128-bit uuid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

PARTITION_KEY_BITS = 64
_ID_PREFIX = "inv_"
_ID_LENGTH = len(_ID_PREFIX) + 16 + 32
# Exactly what ``make_invocation_id`` writes: ``int(x, 16)`` alone would also take signs,
# underscores, whitespace and upper case, and a signed partition key routes nowhere.
_ID_PATTERN = re.compile(r"inv_[0-9a-f]{48}", re.ASCII)


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
    if len(invocation_id) != _ID_LENGTH or _ID_PATTERN.fullmatch(invocation_id) is None:
        shown = invocation_id if len(invocation_id) <= 80 else invocation_id[:80] + "..."
        raise InvalidInvocationId(
            f"not an invocation id: {shown!r} (expected inv_ and 48 lowercase hex digits)"
        )
    return int(invocation_id[len(_ID_PREFIX) : len(_ID_PREFIX) + 16], 16)


def is_invocation_id(value: str) -> bool:
    try:
        parse_partition_key(value)
    except InvalidInvocationId:
        return False
    return True


def random_seed_of(invocation_id: str) -> int:
    """The seed the SDK uses for ``ctx.random()`` / ``ctx.uuid()``: fixed per invocation."""
    return stable_hash64("seed", invocation_id)


def invocation_id_for(
    service: str,
    handler: str,
    key: str | None,
    idempotency_key: str | None,
    *,
    entropy: bytes,
) -> str:
    """The id of a new invocation of ``service/handler``.

    Objects and workflows live on their key's partition. With an idempotency key the id is a
    function of target and key only, so every retry of the request names the same invocation.
    Otherwise ``entropy`` (16 bytes) decides it: random at the ingress, derived from the caller's
    id and journal index for calls made by handlers (so a replayed call gets the same id).
    """
    if len(entropy) != 16:
        raise ValueError("entropy must be 16 bytes")
    described = f"{service}/{key}/{handler}" if key is not None else f"{service}/{handler}"
    if key is not None:
        partition_key = object_partition_key(service, key)
    elif idempotency_key is not None:
        partition_key = stable_hash64("idempotency", described, idempotency_key)
    else:
        partition_key = int.from_bytes(entropy[:8], "big")
    if idempotency_key is not None:
        return make_invocation_id(partition_key, stable_uuid128(described, idempotency_key))
    return make_invocation_id(partition_key, entropy)


def call_entropy(caller_id: str, index: int) -> bytes:
    """Entropy for the invocation a handler starts at journal entry ``index``."""
    return stable_uuid128("call", caller_id, str(index))


_AWAKEABLE_PREFIX = "sign_1"
# url-safe base64 without padding of a 52-character invocation id and a u32 index (56 bytes).
_AWAKEABLE_PATTERN = re.compile(r"sign_1[A-Za-z0-9_-]{75}", re.ASCII)


class InvalidAwakeableId(ValueError):
    """The string is not an awakeable id."""


def awakeable_id(invocation_id: str, index: int) -> str:
    """``sign_1`` + url-safe base64 of (invocation id, u32 entry index): routes to the owner."""
    raw = invocation_id.encode() + index.to_bytes(4, "big")
    return _AWAKEABLE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_awakeable_id(value: str) -> tuple[str, int]:
    """(owner invocation id, entry index) of an awakeable id."""
    shown = value if len(value) <= 100 else value[:100] + "..."
    if _AWAKEABLE_PATTERN.fullmatch(value) is None:
        raise InvalidAwakeableId(f"not an awakeable id: {shown!r}")
    encoded = value[len(_AWAKEABLE_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=")
        invocation_id = raw[:-4].decode("ascii")
        parse_partition_key(invocation_id)
    except (ValueError, binascii.Error) as exc:
        raise InvalidAwakeableId(f"not an awakeable id: {shown!r}") from exc
    index = int.from_bytes(raw[-4:], "big")
    if awakeable_id(invocation_id, index) != value:  # one spelling per awakeable (no stray bits)
        raise InvalidAwakeableId(f"not an awakeable id: {shown!r}")
    return invocation_id, index


def workflow_run_id(service: str, key: str) -> str:
    """The one invocation that runs workflow ``service`` for ``key``: a fixed id per key."""
    return make_invocation_id(
        object_partition_key(service, key), stable_uuid128("workflow", service, key)
    )


def subscription_invocation_id(
    subscription_id: str, topic: str, partition: int, offset: int, service: str, key: str | None
) -> str:
    """The invocation a subscription makes of the record at (topic, partition, offset).

    A function of the record's position only, so a record read twice (a crash before the offset
    commit, a rebalance) names the same invocation. Keyed sinks live on their key's partition.
    """
    parts = ("subscription", subscription_id, topic, str(partition), str(offset))
    if key is not None:
        partition_key = object_partition_key(service, key)
    else:
        partition_key = stable_hash64(*parts)
    return make_invocation_id(partition_key, stable_uuid128(*parts))
