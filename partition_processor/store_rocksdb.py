"""The RocksDB ``Store`` (rocksdict): one database per node, shared by its partitions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

# Memory caps, so a node's RSS does not grow with the number of stored invocations: memtables
# (write buffers) flush at 16 MiB, at most two per database; reads share one 32 MiB block cache.
WRITE_BUFFER_BYTES = 16 * 1024 * 1024
BLOCK_CACHE_BYTES = 32 * 1024 * 1024


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no such key)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class RocksDBStore:
    """Key-value store on RocksDB. Writes go through the WAL; a batch commit is atomic."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        options.set_db_write_buffer_size(2 * WRITE_BUFFER_BYTES)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
        table.set_cache_index_and_filter_blocks(True)
        options.set_block_based_table_factory(table)
        self._db = Rdict(str(path), options)
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def scan(
        self, prefix: bytes, start: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        # The upper bound stops the iterator at the prefix's end: without it, the step past the
        # last match walks over every deleted key that follows (finished journals leave many
        # tombstones), which made a journal read cost milliseconds instead of microseconds.
        read_options = ReadOptions()
        end = prefix_end(prefix)
        if end is not None:
            read_options.set_iterate_upper_bound(end)
        iterator = self._db.iter(read_options)
        iterator.seek(max(prefix, start or prefix))
        matched: list[tuple[bytes, bytes]] = []
        while iterator.valid():
            key = iterator.key()
            if not key.startswith(prefix) or (limit is not None and len(matched) >= limit):
                break
            matched.append((key, iterator.value()))
            iterator.next()
        del iterator
        return iter(matched)

    def commit(self, writes: Mapping[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
