"""The RocksDB ``Store`` (rocksdict): one database per node, shared by its partitions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch


class RocksDBStore:
    """Key-value store on RocksDB. Writes go through the WAL; a batch commit is atomic."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(path), options)
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        iterator = self._db.iter()
        iterator.seek(prefix)
        matched: list[tuple[bytes, bytes]] = []
        while iterator.valid():
            key = iterator.key()
            if not key.startswith(prefix):
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
