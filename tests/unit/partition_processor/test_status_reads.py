"""A batch reads each invocation's status row through ``Transaction.status``, which decodes a
row once per batch (issue 10) and still answers every write, delete and rollback."""

from __future__ import annotations

import msgspec
import pytest

from partition_processor import tables
from partition_processor.commands import Effect, End, InvokerEffect, JournalAppend
from partition_processor.journal import GetState, Output, SetState, Success, Void
from partition_processor.tables import Transaction
from tests.unit.partition_processor.env import COUNTER, Env


def test_a_batch_of_one_invocations_effects_decodes_its_status_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = Env()
    env.invoke("a", COUNTER, retention_ms=60_000)  # kept after its end, to be looked at
    decoded: list[bytes] = []
    decode = tables.decode_status

    def counting_decode(raw: bytes) -> tables.InvocationStatus:
        decoded.append(raw)
        return decode(raw)

    monkeypatch.setattr(tables, "decode_status", counting_decode)
    effects: list[Effect] = [
        JournalAppend(1, GetState("n"), completion=Void()),
        JournalAppend(2, SetState("n", b"1")),
        JournalAppend(3, Output(Success(b"1"))),
        End(),
    ]
    env.apply_raw(*(env.record(InvokerEffect("a", 1, e), leader=True) for e in effects))
    # Read from the store once; every later read in the batch is the status it wrote.
    assert len(decoded) == 1
    status = env.status("a")
    assert status is not None and status.phase == "completed"
    assert status.result == Success(b"1")


def test_status_reads_follow_writes_deletes_and_rollbacks() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    tx = Transaction(env.store, 0)
    stored = tx.status("a")
    assert stored is not None and tx.status("a") is stored  # (the same row: decoded once)
    savepoint = tx.savepoint()
    moved = msgspec.structs.replace(stored, journal_length=7)
    tx.put_status(moved)
    assert tx.status("a") == moved
    tx.rollback(savepoint)
    assert tx.status("a") == stored
    tx.put_status(moved)
    tx.delete_status("a")
    assert tx.status("a") is None
    # A raw write of the row (another encoding of a status) is decoded, not taken from before.
    tx.put(tables.keys.status_key(0, "a"), tables._encoder.encode(stored))
    assert tx.status("a") == stored
