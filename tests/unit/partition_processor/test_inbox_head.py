"""The object lock keeps where the object's inbox starts, so a hand-off pops from there."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from partition_processor import keys
from partition_processor.actions import StartInvocation
from partition_processor.commands import End, JournalAppend, Terminate
from partition_processor.journal import Output, Success
from partition_processor.processor import PartitionProcessor
from partition_processor.store_memory import MemoryStore
from partition_processor.values import ObjectLock
from tests.unit.partition_processor.env import COUNTER, NODE, Env


def _finish(env: Env, name: str) -> None:
    env.effect(name, 1, JournalAppend(1, Output(Success(b"1"))))
    env.effect(name, 1, End())


def test_each_hand_off_records_the_inbox_head_and_the_queue_stays_fifo() -> None:
    env = Env()
    for name in ("a", "b", "c", "d"):
        env.invoke(name, COUNTER, request=name)
    seqs = [keys.inbox_seq_of(k) for k, _ in env.store.scan(keys.inbox_prefix(0, "Counter", "k1"))]
    assert len(seqs) == 3
    tail = seqs[-1] + 1  # past the last queued entry
    assert env.tx().lock("Counter", "k1") == ObjectLock("a", 0, tail)
    for holder, following, seq in (("a", "b", seqs[0]), ("b", "c", seqs[1]), ("c", "d", seqs[2])):
        _finish(env, holder)
        assert env.tx().lock("Counter", "k1") == ObjectLock(following, seq + 1, tail)
    _finish(env, "d")
    assert env.tx().lock("Counter", "k1") is None
    assert list(env.store.scan(keys.inbox_prefix(0, "Counter", "k1"))) == []


def test_a_killed_queued_invocation_is_skipped_and_the_head_moves_past_it() -> None:
    env = Env()
    for name in ("a", "b", "c"):
        env.invoke(name, COUNTER, request=name)
    seqs = [keys.inbox_seq_of(k) for k, _ in env.store.scan(keys.inbox_prefix(0, "Counter", "k1"))]
    env.apply(Terminate("b", "kill"))
    _finish(env, "a")
    assert env.tx().lock("Counter", "k1") == ObjectLock("c", seqs[1] + 1, seqs[1] + 1)


def test_a_lock_row_written_before_the_head_was_kept_still_reads() -> None:
    env = Env()
    env.store.commit({keys.lock_key(0, "Counter", "k1"): b"inv_old"})
    assert env.tx().lock("Counter", "k1") == ObjectLock("inv_old", 0)
    assert env.tx().lock_holder("Counter", "k1") == "inv_old"


def test_the_next_queued_call_starts_in_the_apply_of_the_holders_end() -> None:
    """A hot key's hand-off costs no log round trip of its own (issue 10, item 3): applying the
    holder's End record already asks the leader to start the next queued invocation."""
    env = Env()
    env.invoke("a", COUNTER, request="a")
    env.invoke("b", COUNTER, request="b")
    env.effect("a", 1, JournalAppend(1, Output(Success(b"1"))))
    actions = env.effect("a", 1, End())
    assert [a for a in actions if isinstance(a, StartInvocation)] == [StartInvocation("b", 1)]
    status = env.status("b")
    assert status is not None and (status.phase, status.attempt) == ("invoked", 1)


class InboxScanCounting(MemoryStore):
    """The memory store, counting the scans of object inboxes."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox_scans = 0

    def scan(
        self, prefix: bytes, start: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        if prefix.startswith(keys.partition_prefix(keys.Kind.INBOX, 0)):
            self.inbox_scans += 1
        return super().scan(prefix, start, limit)


def test_a_release_with_nothing_queued_frees_the_lock_without_scanning_the_inbox() -> None:
    """The lock knows where its inbox ends (issue 10): an object's invocation that nobody
    queued behind ends without a scan of the inbox; one with a queue still hands over in
    order, and a lock row written before the tail was kept still scans."""
    env = Env()
    store = env.store = InboxScanCounting()
    env.processor = PartitionProcessor(store, 0, NODE)
    env.lsn = 0
    env.become_leader()
    env.invoke("a", COUNTER, request="a")
    assert env.tx().lock("Counter", "k1") == ObjectLock("a", 0, 0)
    _finish(env, "a")
    assert store.inbox_scans == 0 and env.tx().lock("Counter", "k1") is None
    env.invoke("b", COUNTER, request="b")
    env.invoke("c", COUNTER, request="c")
    _finish(env, "b")
    assert store.inbox_scans == 1  # the hand-off to c pops its entry
    lock = env.tx().lock("Counter", "k1")
    assert lock is not None and lock.holder == "c" and lock.inbox_head == lock.inbox_tail
    _finish(env, "c")
    assert store.inbox_scans == 1 and env.tx().lock("Counter", "k1") is None
    # A row of an older build ([holder, head]) has no tail: its release scans, and still frees.
    env.invoke("d", COUNTER, request="d")
    store.commit({keys.lock_key(0, "Counter", "k1"): msgspec.msgpack.encode(["d", 0])})
    _finish(env, "d")
    assert store.inbox_scans == 2 and env.tx().lock("Counter", "k1") is None
