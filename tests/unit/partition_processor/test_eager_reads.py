"""State reads the SDK answered from the attempt's eager state (``JournalAppend.completion``)."""

from __future__ import annotations

from partition_processor.actions import NotifyInvoker
from partition_processor.commands import JournalAppend
from partition_processor.journal import (
    GetState,
    GetStateKeys,
    JournalEntry,
    Run,
    SetState,
    StateKeys,
    Success,
    Void,
)
from partition_processor.tables import read_state
from tests.unit.partition_processor.env import COUNTER, Env


def test_an_answered_read_is_journaled_as_given_completed_first_and_not_notified() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    env.effect("a", 1, JournalAppend(1, SetState("n", b"5")))
    # The SDK's answer wins over the store (the journaled value is what replay sees).
    assert env.effect("a", 1, JournalAppend(2, GetState("n"), completion=Success(b"4"))) == []
    assert env.tx().entry("a", 2) == JournalEntry(GetState("n"), Success(b"4"), completion_seq=0)
    assert env.effect("a", 1, JournalAppend(3, GetStateKeys(), completion=StateKeys(["n"]))) == []
    assert env.tx().entry("a", 3) == JournalEntry(GetStateKeys(), StateKeys(["n"]))
    status = env.status("a")
    assert status is not None and status.journal_length == 4 and status.completions == 0
    # A lazy read after them is numbered 1: answered reads take no place in the order.
    assert env.effect("a", 1, JournalAppend(4, GetState("m"))) == [
        NotifyInvoker("a", 1, 4, Void(), 1)
    ]


def test_a_completion_of_the_wrong_kind_is_ignored_and_the_store_answers() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    env.effect("a", 1, JournalAppend(1, SetState("n", b"5")))
    wrong = JournalAppend(2, GetState("n"), completion=StateKeys(["x"]))
    assert env.effect("a", 1, wrong) == [NotifyInvoker("a", 1, 2, Success(b"5"), 1)]
    # Only reads may carry one: a run stays open for its own completion.
    env.effect("a", 1, JournalAppend(3, Run("step"), completion=Success(b"1")))
    entry = env.tx().entry("a", 3)
    assert entry is not None and entry.completion is None


def test_duplicate_answered_reads_and_stale_attempts_change_nothing() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    read = JournalAppend(1, GetState("n"), completion=Void())
    env.effect("a", 1, read)
    env.effect("a", 1, JournalAppend(1, GetState("n"), completion=Success(b"9")))
    env.effect("a", 2, JournalAppend(2, GetState("n"), completion=Success(b"9")))
    assert env.tx().entry("a", 1) == JournalEntry(GetState("n"), Void())
    status = env.status("a")
    assert status is not None and status.journal_length == 2


def test_read_state_stops_at_the_byte_limit_in_key_order() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    for index, (name, value) in enumerate((("bb", b"22"), ("a", b"1"), ("ccc", b"333")), 1):
        env.effect("a", 1, JournalAppend(index, SetState(name, value)))
    store = env.store
    # Store order: names are length-prefixed (shorter names first).
    everything = [("a", b"1"), ("bb", b"22"), ("ccc", b"333")]
    assert read_state(store, 0, "Counter", "k1", 1000) == (everything, True)
    assert read_state(store, 0, "Counter", "k1", 6) == (everything[:2], False)
    assert read_state(store, 0, "Counter", "k1", 0) == ([], False)
    assert read_state(store, 0, "Counter", "other", 0) == ([], True)
