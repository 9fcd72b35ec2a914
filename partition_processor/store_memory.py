"""An in-memory ``Store`` for unit tests and simulations."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping


class MemoryStore:
    """Sorted key-value store; commits are atomic because they run without interleaving."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(
        self, prefix: bytes, start: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        first = bisect.bisect_left(self._keys, max(prefix, start or prefix))
        matched: list[tuple[bytes, bytes]] = []
        for key in self._keys[first:]:
            if not key.startswith(prefix) or (limit is not None and len(matched) >= limit):
                break
            matched.append((key, self._data[key]))
        return iter(matched)

    def commit(self, writes: Mapping[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                if key in self._data:
                    del self._data[key]
                    self._keys.pop(bisect.bisect_left(self._keys, key))
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value

    def snapshot(self) -> dict[bytes, bytes]:
        """A copy of everything stored (to compare two stores)."""
        return dict(self._data)

    def close(self) -> None:
        self._data.clear()
        self._keys.clear()
