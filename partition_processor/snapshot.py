"""Partition snapshots (DESIGN §8): a consistent copy of one partition's rows and its position.

A snapshot file is::

    b"CAIRNSNP"  u16 format  u32 header length  header (msgpack)  body (zlib of msgpack rows)
    blake2b-256 digest of everything before it

The header says which partition, at which applied LSN, taken by which node, for how many
partitions; the body is every (key, value) of that partition in key order, across every key kind
(keys.py: each key starts with its kind and partition). The digest makes a corrupt or truncated
file detectable before anything is written to the store.

Pure: the caller hands the rows in (read from the store between two batches, so they are
consistent with one ``applied_lsn``) and writes the restore batch itself.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator

import msgspec

from partition_processor import keys
from partition_processor.tables import KeyValueReader, Store, read_fsm

FORMAT_VERSION = 1
MAGIC = b"CAIRNSNP"
_PREAMBLE = struct.Struct(">HI")  # format version, header length
_DIGEST_BYTES = 32
# zlib level 1: most of the size win of higher levels at a fraction of the CPU.
_ZLIB_LEVEL = 1


class SnapshotCorrupt(Exception):
    """A snapshot file failed its checksum, is truncated, or has an unknown format."""


class SnapshotHeader(msgspec.Struct, frozen=True):
    """What a snapshot is of. ``applied_lsn`` is the last record its rows include."""

    partition: int
    applied_lsn: int
    partitions: int
    node: str
    created_ms: int
    leader_epoch: int
    rows: int
    format: int = FORMAT_VERSION


class Snapshot(msgspec.Struct, frozen=True):
    header: SnapshotHeader
    rows: list[tuple[bytes, bytes]]


_header_decoder = msgspec.msgpack.Decoder(SnapshotHeader)
_rows_decoder = msgspec.msgpack.Decoder(list[tuple[bytes, bytes]])
_encoder = msgspec.msgpack.Encoder()


def partition_rows(reader: KeyValueReader, partition: int) -> list[tuple[bytes, bytes]]:
    """Every row of ``partition``, kind by kind in key order.

    Consistent only if nothing commits to the partition meanwhile: the partition worker calls it
    between two batches and applies nothing until it returns.
    """
    rows: list[tuple[bytes, bytes]] = []
    for kind in keys.Kind:
        rows.extend(reader.scan(keys.partition_prefix(kind, partition)))
    return rows


def encode_snapshot(
    partition: int,
    partitions: int,
    rows: list[tuple[bytes, bytes]],
    *,
    node: str,
    created_ms: int,
) -> tuple[SnapshotHeader, bytes]:
    """The header (position from the rows' own FSM row) and the snapshot file's bytes."""
    fsm = read_fsm(_Rows(rows), partition)
    header = SnapshotHeader(
        partition=partition,
        applied_lsn=fsm.applied_lsn,
        partitions=partitions,
        node=node,
        created_ms=created_ms,
        leader_epoch=fsm.leader_epoch,
        rows=len(rows),
    )
    encoded_header = _encoder.encode(header)
    body = zlib.compress(_encoder.encode(rows), _ZLIB_LEVEL)
    content = MAGIC + _PREAMBLE.pack(FORMAT_VERSION, len(encoded_header)) + encoded_header + body
    return header, content + hashlib.blake2b(content, digest_size=_DIGEST_BYTES).digest()


def decode_header(data: bytes) -> SnapshotHeader:
    """The header of a snapshot file, after checking its digest (raises ``SnapshotCorrupt``)."""
    header, _ = _verified(data)
    return header


def decode_snapshot(data: bytes) -> Snapshot:
    """Check the digest and decode the whole snapshot (raises ``SnapshotCorrupt``)."""
    header, body = _verified(data)
    try:
        rows = _rows_decoder.decode(zlib.decompress(body))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise SnapshotCorrupt(f"snapshot body does not decode: {exc}") from exc
    if len(rows) != header.rows:
        raise SnapshotCorrupt(f"snapshot holds {len(rows)} rows, its header says {header.rows}")
    return Snapshot(header, rows)


def restore_writes(
    store: KeyValueReader, partition: int, snapshot: Snapshot
) -> dict[bytes, bytes | None]:
    """One write batch that replaces every row of ``partition`` with the snapshot's rows.

    Rows of the partition that the snapshot lacks are deleted, so the store ends up exactly as
    the snapshotting node's store was at ``applied_lsn`` (its FSM row included).
    """
    if snapshot.header.partition != partition:
        raise ValueError(f"snapshot of partition {snapshot.header.partition}, not {partition}")
    writes: dict[bytes, bytes | None] = {key: None for key, _ in partition_rows(store, partition)}
    for key, value in snapshot.rows:
        if len(key) < 4 or keys.partition_of_key(key) != partition:
            raise SnapshotCorrupt(f"snapshot of partition {partition} holds a foreign key")
        writes[key] = value
    return writes


def restore_into(store: Store, partition: int, snapshot: Snapshot) -> None:
    """Replace the partition's rows with the snapshot's, in one atomic commit."""
    store.commit(restore_writes(store, partition, snapshot))


def _verified(data: bytes) -> tuple[SnapshotHeader, bytes]:
    """(header, compressed body) of a file whose magic, format and digest are right."""
    prefix = len(MAGIC) + _PREAMBLE.size
    if len(data) < prefix + _DIGEST_BYTES or not data.startswith(MAGIC):
        raise SnapshotCorrupt(f"not a Cairn snapshot or truncated ({len(data)} bytes)")
    content, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.blake2b(content, digest_size=_DIGEST_BYTES).digest() != digest:
        raise SnapshotCorrupt("snapshot checksum mismatch (corrupt or truncated)")
    version, header_length = _PREAMBLE.unpack_from(content, len(MAGIC))
    if version != FORMAT_VERSION:
        raise SnapshotCorrupt(f"snapshot format {version} is not supported ({FORMAT_VERSION} is)")
    if prefix + header_length > len(content):
        raise SnapshotCorrupt("snapshot header runs past the end of the file")
    try:
        header = _header_decoder.decode(content[prefix : prefix + header_length])
    except msgspec.DecodeError as exc:
        raise SnapshotCorrupt(f"snapshot header does not decode: {exc}") from exc
    return header, content[prefix + header_length :]


class _Rows:
    """A ``KeyValueReader`` over an in-memory row list (to read the FSM row of a snapshot)."""

    def __init__(self, rows: Iterable[tuple[bytes, bytes]]) -> None:
        self._rows = dict(rows)

    def get(self, key: bytes) -> bytes | None:
        return self._rows.get(key)

    def scan(
        self, prefix: bytes, start: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        matched = sorted(
            (k, v) for k, v in self._rows.items() if k.startswith(prefix) and k >= (start or b"")
        )
        return iter(matched if limit is None else matched[:limit])
