"""Bounds in the state machine and its tables (DESIGN §11): inbox pops read one row, and an
invocation holds at most ``max_attached`` waiting ingress requests."""

from __future__ import annotations

from collections.abc import Iterator

from partition_processor import keys
from partition_processor.actions import RespondToIngress
from partition_processor.commands import Attach, End, IngressSink, Invoke, JournalAppend
from partition_processor.journal import Output, Success
from partition_processor.state_machine.on_attach import TOO_MANY_ATTACHED
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import Transaction
from tests.unit.partition_processor.env import COUNTER, GREETER, NODE, Env


class CountingReader:
    """The memory store, counting the rows its scans hand out."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.rows_read = 0

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def scan(
        self, prefix: bytes, start: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        for row in self.store.scan(prefix, start, limit):
            self.rows_read += 1
            yield row


def _queued(count: int) -> MemoryStore:
    store = MemoryStore()
    tx = Transaction(store, 0)
    for n in range(count):
        tx.enqueue_inbox("Counter", "k1", f"inv{n}", tx.lock("Counter", "k1"))
    fsm_key, fsm = tx.encoded_fsm()
    store.commit({**tx.writes, fsm_key: fsm})
    return store


def _pop(tx: Transaction, from_seq: int = 0) -> str | None:
    popped = tx.pop_inbox("Counter", "k1", from_seq)
    if popped is None:
        return None
    assert isinstance(popped[0], str)
    return popped[0]


def test_pops_from_the_inbox_head_read_one_row_each_past_deleted_rows() -> None:
    """A hand-off pops from the head the lock keeps: the rows popped before (deleted in this
    batch, or tombstones in RocksDB) are not stepped over again."""
    reader = CountingReader(_queued(5_000))
    tx = Transaction(reader, 0)
    head = 0
    for n in range(10):
        before = reader.rows_read
        popped = tx.pop_inbox("Counter", "k1", head)
        assert popped is not None and popped[0] == f"inv{n}"
        head = popped[1] + 1
        assert reader.rows_read - before == 1


def test_an_inbox_pop_reads_one_row_however_long_the_queue() -> None:
    reader = CountingReader(_queued(5_000))
    tx = Transaction(reader, 0)
    assert _pop(tx) == "inv0"
    assert reader.rows_read == 1


def test_pops_in_one_batch_skip_the_rows_the_batch_deleted_and_stay_fifo() -> None:
    reader = CountingReader(_queued(5_000))
    tx = Transaction(reader, 0)
    popped = []
    for n in range(10):
        before = reader.rows_read
        popped.append(_pop(tx))
        # One row plus, at most, one per row this batch already deleted: never the whole queue.
        assert reader.rows_read - before <= 1 + n
    assert popped == [f"inv{n}" for n in range(10)]
    tx.enqueue_inbox("Counter", "k1", "late", tx.lock("Counter", "k1"))
    rest = MemoryStore()
    rest.commit(dict(reader.store.snapshot()))
    rest.commit(tx.writes)
    prefix = keys.inbox_prefix(0, "Counter", "k1")
    remaining = [v.decode() for _, v in rest.scan(prefix)]
    assert remaining[0] == "inv10" and remaining[-1] == "late" and len(remaining) == 4_991


def test_a_pop_undone_by_a_savepoint_is_popped_again() -> None:
    """The bounded scan sees the batch's writes as they are after a rollback: a pop whose record
    was rolled back (apply is total) leaves its row for the next pop, and a pop before the
    savepoint stays done."""
    reader = CountingReader(_queued(100))
    tx = Transaction(reader, 0)
    assert _pop(tx) == "inv0"
    savepoint = tx.savepoint()
    assert _pop(tx) == "inv1"
    assert _pop(tx) == "inv2"
    tx.rollback(savepoint)
    assert _pop(tx) == "inv1"
    assert _pop(tx) == "inv2"
    assert _pop(tx) == "inv3"


def test_an_empty_inbox_pops_nothing() -> None:
    tx = Transaction(MemoryStore(), 0)
    assert _pop(tx) is None


def test_exclusive_queue_still_runs_in_order_with_bounded_pops() -> None:
    env = Env()
    for name in ("a", "b", "c"):
        env.invoke(name, COUNTER, request=name)
    for name, following in (("a", "b"), ("b", "c")):
        env.effect(name, 1, JournalAppend(1, Output(Success(b"1"))))
        actions = env.effect(name, 1, End())
        assert any(getattr(a, "invocation_id", None) == following for a in actions), actions


def _sink(n: int) -> IngressSink:
    return IngressSink(NODE, f"r{n}")


def test_attach_past_the_bound_is_answered_429_and_not_recorded() -> None:
    env = Env()
    env.invoke("a", request="r0")  # one waiter: the call itself
    assert env.apply(Attach("a", _sink(1), max_attached=3)) == []
    assert env.apply(Attach("a", _sink(2), max_attached=3)) == []
    (refused,) = env.apply(Attach("a", _sink(3), max_attached=3))
    assert isinstance(refused, RespondToIngress) and refused.sink == _sink(3)
    assert refused.result.code == TOO_MANY_ATTACHED  # type: ignore[union-attr]
    assert refused.refused  # the partition refused the request: not the invocation's outcome
    status = env.status("a")
    assert status is not None and status.sinks == [_sink(0), _sink(1), _sink(2)]
    # An attacher already recorded is not refused again (a record applied twice).
    assert env.apply(Attach("a", _sink(2), max_attached=3)) == []
    # Records from before the bound existed (max_attached 0) stay unbounded.
    assert env.apply(Attach("a", _sink(4))) == []
    # Everyone recorded gets the result.
    env.effect("a", 1, JournalAppend(1, Output(Success(b"7"))))
    done = env.effect("a", 1, End())
    answered = {a.sink for a in done if isinstance(a, RespondToIngress)}
    assert answered == {_sink(0), _sink(1), _sink(2), _sink(4)}


def test_a_repeated_idempotent_call_past_the_bound_is_answered_429() -> None:
    env = Env()
    env.invoke("a", request="r0")

    def again(n: int) -> list[object]:
        return list(env.apply(Invoke("a", GREETER, b'"x"', sink=_sink(n), max_attached=2)))

    assert again(1) == []
    (refused,) = again(2)
    assert isinstance(refused, RespondToIngress)
    assert refused.result.code == TOO_MANY_ATTACHED  # type: ignore[union-attr]
    assert refused.refused
    status = env.status("a")
    assert status is not None and status.sinks == [_sink(0), _sink(1)]
