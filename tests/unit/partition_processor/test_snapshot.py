"""The snapshot file format and the restore batch (pure, on the in-memory store)."""

from __future__ import annotations

import pytest

from partition_processor import keys
from partition_processor.commands import End, InvokerEffect, JournalAppend
from partition_processor.journal import Output, SetState, Sleep, Success
from partition_processor.snapshot import (
    FORMAT_VERSION,
    SnapshotCorrupt,
    decode_header,
    decode_snapshot,
    encode_snapshot,
    partition_rows,
    restore_into,
)
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import read_fsm
from tests.unit.partition_processor.env import COUNTER, Env


def _busy_env() -> Env:
    """A partition with rows of many kinds: status, journal, state, lock, inbox, timer."""
    env = Env()
    env.invoke("a", COUNTER)
    env.effect("a", 1, JournalAppend(1, SetState("n", b"5")))
    env.effect("a", 1, JournalAppend(2, Sleep(wake_up_ms=99_000)))
    env.invoke("b", COUNTER)  # waits in the inbox behind "a"'s lock
    env.invoke("c")
    env.effect("c", 1, JournalAppend(1, Output(Success(b"1"))))
    env.apply(InvokerEffect("c", 1, End()), leader=True)
    return env


def _encode(store: MemoryStore, partition: int = 0) -> bytes:
    _, data = encode_snapshot(
        partition, 4, partition_rows(store, partition), node="n1", created_ms=123
    )
    return data


def test_round_trip_restores_every_row_and_the_position() -> None:
    env = _busy_env()
    rows = partition_rows(env.store, 0)
    kinds = {keys.Kind(int.from_bytes(k[:2], "big")) for k, _ in rows}
    assert {keys.Kind.FSM, keys.Kind.STATUS, keys.Kind.JOURNAL, keys.Kind.STATE} <= kinds
    assert {keys.Kind.LOCK, keys.Kind.INBOX, keys.Kind.TIMER} <= kinds
    header, data = encode_snapshot(0, 4, rows, node="n1", created_ms=123)
    assert header.applied_lsn == read_fsm(env.store, 0).applied_lsn == env.lsn - 1
    assert (header.partition, header.partitions, header.node, header.rows) == (
        0,
        4,
        "n1",
        len(rows),
    )
    assert header.format == FORMAT_VERSION
    assert decode_header(data) == header

    target = MemoryStore()
    target.commit({keys.fsm_key(1): b"other partition", keys.status_key(0, "stale"): b"x"})
    restore_into(target, 0, decode_snapshot(data))
    assert target.snapshot() == {**env.store.snapshot(), keys.fsm_key(1): b"other partition"}


def test_rows_of_other_partitions_are_not_in_the_snapshot() -> None:
    env = _busy_env()
    env.store.commit({keys.status_key(1, "x"): b"1", keys.state_key(2, "S", "k", "n"): b"2"})
    assert all(keys.partition_of_key(k) == 0 for k, _ in partition_rows(env.store, 0))


@pytest.mark.parametrize("cut", [1, 10, 40, 100])
def test_truncation_is_detected(cut: int) -> None:
    data = _encode(_busy_env().store)
    with pytest.raises(SnapshotCorrupt):
        decode_snapshot(data[: len(data) - cut])


@pytest.mark.parametrize("where", [0, 9, 20, -40, -1])
def test_a_flipped_byte_is_detected(where: int) -> None:
    data = bytearray(_encode(_busy_env().store))
    data[where] ^= 0x40
    with pytest.raises(SnapshotCorrupt):
        decode_snapshot(bytes(data))


def test_empty_and_foreign_files_are_rejected() -> None:
    for data in (b"", b"CAIRNSNP", b"PK\x03\x04" + b"\x00" * 100):
        with pytest.raises(SnapshotCorrupt):
            decode_snapshot(data)


def test_restore_refuses_a_snapshot_of_another_partition() -> None:
    snapshot = decode_snapshot(_encode(_busy_env().store, 0))
    with pytest.raises(ValueError):
        restore_into(MemoryStore(), 1, snapshot)
