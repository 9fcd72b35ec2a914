"""Apply is total (DESIGN §11): a record whose apply raises fails only its own invocation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from partition_processor import codes
from partition_processor.actions import RespondToIngress, StartInvocation
from partition_processor.commands import (
    Attach,
    CallerRef,
    Command,
    End,
    Failed,
    IngressSink,
    Invoke,
    JournalAppend,
    RetryPolicy,
    Target,
    Terminate,
    TimerFired,
)
from partition_processor.journal import Failure, GetState, Output, Success
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import read_outbox
from tests.unit.partition_processor.env import COUNTER, NODE, Env

HUGE_KEY = "k" * 70_000  # longer than a store key's 2-byte length prefix can say


def _object(key: str) -> Target:
    return Target("Counter", "add", "virtual_object", "exclusive", key=key)


def test_an_invoke_that_cannot_be_applied_answers_its_caller_and_leaves_nothing() -> None:
    env = Env()
    sink = IngressSink(NODE, "r-poison")
    poison = env.record(Invoke("p", _object(HUGE_KEY), b"1", sink=sink))
    good = env.record(Invoke("g", COUNTER, b"1", sink=IngressSink(NODE, "r-good")))
    before = env.store.snapshot()
    outcome = env.processor.apply_batch([LogEntry(env.lsn, poison), LogEntry(env.lsn + 1, good)])
    env.lsn += 2
    [rejection] = outcome.rejected
    assert rejection.reason == "failed_invocation" and rejection.invocation_id == "p"
    assert "KeyTooLong" in rejection.detail
    [answer, started] = outcome.actions
    assert isinstance(answer, RespondToIngress) and answer.sink == sink
    assert isinstance(answer.result, Failure) and answer.result.code == codes.UNAPPLICABLE_RECORD
    assert started == StartInvocation("g", 1)  # the next record of the same batch applied
    assert env.status("p") is None  # the poison's partial writes (status, input) are gone
    assert env.tx().entry("p", 0) is None
    changed = {k for k, v in env.store.snapshot().items() if before.get(k) != v}
    assert all(b"p" not in key[4:] for key in changed if len(key) < 200)


def test_a_call_that_cannot_be_applied_fails_the_callers_call() -> None:
    env = Env()
    caller = CallerRef("c", 1)
    env.apply(Invoke("p", _object(HUGE_KEY), b"1", caller=caller))
    [(_, message)] = read_outbox(env.store, 0)
    assert message.route == "c"
    result = message.command.result  # type: ignore[union-attr]
    assert isinstance(result, Failure) and result.code == codes.UNAPPLICABLE_RECORD


def test_an_effect_that_cannot_be_applied_fails_the_invocation_and_frees_the_lock() -> None:
    env = Env()
    env.invoke("a", COUNTER, request="r1")
    env.invoke("b", COUNTER, request="r2")  # queued behind a on the same object
    actions = env.effect("a", 1, JournalAppend(1, GetState("n" * 70_000)))
    assert actions[0].__class__.__name__ == "AbortInvocation"
    answer = next(a for a in actions if isinstance(a, RespondToIngress))
    assert answer.sink.request_id == "r1" and isinstance(answer.result, Failure)
    assert answer.result.code == codes.UNAPPLICABLE_RECORD
    assert "InvokerEffect" in answer.result.message
    assert StartInvocation("b", 1) in actions  # the lock went to the next in the inbox
    status = env.status("b")
    assert status is not None and status.phase == "invoked"
    env.effect("b", 1, JournalAppend(1, Output(Success(b"2"))))
    done = env.effect("b", 1, End())
    assert any(isinstance(a, RespondToIngress) and a.result == Success(b"2") for a in done)


@pytest.mark.parametrize("make", [Attach, lambda i, sink: Terminate(i, "kill", sink)])
def test_a_management_record_that_cannot_be_applied_still_answers_its_request(
    make: Callable[[str, IngressSink], Command],
) -> None:
    env = Env()
    sink = IngressSink(NODE, "r-admin")
    actions = env.apply(make("i" * 70_000, sink))
    [answer] = actions
    assert isinstance(answer, RespondToIngress) and answer.sink == sink
    assert isinstance(answer.result, Failure) and answer.result.code == codes.UNAPPLICABLE_RECORD
    assert env.invoke("a") == [StartInvocation("a", 1)]


def test_a_timer_record_that_cannot_be_applied_is_dropped() -> None:
    env = Env()
    outcome = env.processor.apply_batch([LogEntry(env.lsn, env.record(TimerFired(-5, "x")))])
    env.lsn += 1
    assert [r.reason for r in outcome.rejected] == ["dropped"]
    assert env.invoke("a") == [StartInvocation("a", 1)]


def test_undecodable_records_are_reported() -> None:
    env = Env()
    outcome = env.processor.apply_batch([LogEntry(env.lsn, b"\x00garbage")])
    assert [r.reason for r in outcome.rejected] == ["undecodable"]


def test_a_steep_retry_policy_saturates_instead_of_overflowing() -> None:
    env = Env()
    steep = RetryPolicy(initial_interval_ms=1, factor=1e300, max_interval_ms=10)
    env.invoke("a", policy=steep)
    for attempt in range(1, 6):
        env.effect("a", attempt, Failed(500, "boom", True))
        status = env.status("a")
        assert status is not None and status.phase == "backing_off"
        [(wake_ms, timer_id)] = env.processor.pending_timers()
        assert wake_ms <= env.now_ms + 10
        env.apply(TimerFired(wake_ms, timer_id), leader=True)
    assert env.processor.fsm.applied_lsn == env.lsn - 1


def _poison_log(env: Env) -> list[bytes]:
    sink = IngressSink(NODE, "r")
    return [
        env.record(Invoke("a", COUNTER, b"1", sink=sink)),
        env.record(Invoke("p", _object(HUGE_KEY), b"1", sink=sink, caller=CallerRef("c", 3))),
        env.record(Invoke("b", COUNTER, b"1", sink=sink)),
        env.record(TimerFired(-1, "nothing")),
    ]


def test_followers_and_replays_store_exactly_the_same() -> None:
    leader = Env()
    records = _poison_log(leader)
    entries = [LogEntry(leader.lsn + i, r) for i, r in enumerate(records)]
    leader.processor.apply_batch(entries)
    # A follower applies the same log from scratch, one record per batch, under another name.
    follower_store = MemoryStore()
    follower = PartitionProcessor(follower_store, 0, "node-b/2")
    history = [LogEntry(i, leader.record_at(i)) for i in range(leader.lsn)] + entries
    for entry in history:
        follower.apply_batch([entry])
    assert follower_store.snapshot() == leader.store.snapshot()
    again = MemoryStore()
    PartitionProcessor(again, 0, NODE).apply_batch(history)
    assert again.snapshot() == leader.store.snapshot()
