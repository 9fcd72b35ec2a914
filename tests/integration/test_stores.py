"""The RocksDB store (real files) behaves as the in-memory one: gets, atomic commits, prefix scans
in key order, also across deleted keys and prefixes ending in 0xff."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from partition_processor.store_memory import MemoryStore
from partition_processor.store_rocksdb import RocksDBStore, prefix_end

KEYS = st.binary(min_size=1, max_size=4).map(lambda b: b.replace(b"\x00", b"\xff"))
WRITES = st.lists(
    st.dictionaries(KEYS, st.one_of(st.none(), st.binary(max_size=8)), max_size=12),
    max_size=6,
)


@given(prefix=st.binary(max_size=4), key=st.binary(max_size=6))
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: bytes, key: bytes) -> None:
    end = prefix_end(prefix)
    if end is None:  # only 0xff bytes: every key from the prefix on has it or is greater
        assert prefix.strip(b"\xff") == b""
        return
    assert prefix < end
    if key.startswith(prefix):
        assert key < end
    elif key > prefix:
        assert key >= end


@settings(max_examples=60, deadline=None)
@given(batches=WRITES, prefixes=st.lists(st.binary(max_size=3), min_size=1, max_size=4))
def test_rocksdb_scans_like_the_memory_store(
    batches: list[dict[bytes, bytes | None]], prefixes: list[bytes]
) -> None:
    memory = MemoryStore()
    with tempfile.TemporaryDirectory() as directory:
        rocks = RocksDBStore(Path(directory))
        try:
            for writes in batches:
                memory.commit(writes)
                rocks.commit(writes)
            for prefix in prefixes:
                assert list(rocks.scan(prefix)) == list(memory.scan(prefix))
            for key in {k for writes in batches for k in writes}:
                assert rocks.get(key) == memory.get(key)
        finally:
            rocks.close()


def test_a_scan_stops_at_its_prefix_among_many_deleted_keys(tmp_path: Path) -> None:
    store = RocksDBStore(tmp_path)
    try:
        store.commit({b"j" + i.to_bytes(4, "big"): b"x" for i in range(2000)})
        store.commit({b"j" + i.to_bytes(4, "big"): None for i in range(2000)})
        store.commit({b"j" + (7).to_bytes(4, "big") + b"\x01": b"live", b"k": b"next"})
        assert list(store.scan(b"j" + (7).to_bytes(4, "big"))) == [
            (b"j" + (7).to_bytes(4, "big") + b"\x01", b"live")
        ]
        assert list(store.scan(b"k")) == [(b"k", b"next")]
        assert list(store.scan(b"j\xff")) == []
    finally:
        store.close()
