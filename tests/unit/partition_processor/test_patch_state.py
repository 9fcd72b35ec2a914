"""``PatchState``: an operator's state edit goes through the log and never lands under a running
invocation of the object."""

from __future__ import annotations

from partition_processor.actions import RespondToIngress, StartInvocation
from partition_processor.commands import (
    End,
    IngressSink,
    JournalAppend,
    PatchState,
    Target,
    Terminate,
)
from partition_processor.journal import Failure, GetState, Output, SetState, Success
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import Transaction, read_state, state_version
from partition_processor.values import QueuedPatch
from runtime.admin.sql_tables import partition_rows
from tests.unit.partition_processor.env import COUNTER, NODE, Env

RUN = Target("Order", "run", "workflow", "workflow", key="k1")


def _state(env: Env, service: str = "Counter") -> dict[str, bytes]:
    return env.tx().object_state(service, "k1")


def _patch(
    env: Env, new_state: dict[str, bytes], version: str | None = None, request: str = "p1"
) -> list[RespondToIngress]:
    command = PatchState("Counter", "k1", new_state, version, IngressSink(NODE, request))
    return [a for a in env.apply(command) if isinstance(a, RespondToIngress)]


def _finish(env: Env, name: str, index: int = 1) -> list[StartInvocation]:
    env.effect(name, 1, JournalAppend(index, Output(Success(b"1"))))
    return [a for a in env.effect(name, 1, End()) if isinstance(a, StartInvocation)]


def test_a_patch_of_a_free_object_applies_at_once_and_answers_the_new_version() -> None:
    env = Env()
    answers = _patch(env, {"count": b"5", "name": b'"x"'})
    assert _state(env) == {"count": b"5", "name": b'"x"'}
    version = state_version(_state(env).items())
    assert [a.result for a in answers] == [Success(version.encode())]
    # The whole state is replaced: a name left out is removed.
    answers = _patch(env, {"count": b"6"}, version, request="p2")
    assert _state(env) == {"count": b"6"}
    assert answers[0].result == Success(state_version([("count", b"6")]).encode())


def test_a_version_mismatch_changes_nothing_and_answers_409() -> None:
    env = Env()
    _patch(env, {"count": b"5"})
    stale = state_version([])
    answers = _patch(env, {"count": b"9"}, stale, request="p2")
    assert _state(env) == {"count": b"5"}
    assert answers[0].result == Failure(409, "state version mismatch")


def test_the_version_is_a_digest_of_names_and_values_in_any_order() -> None:
    assert state_version([("a", b"1"), ("b", b"2")]) == state_version([("b", b"2"), ("a", b"1")])
    assert state_version([("a", b"1")]) != state_version([("a", b"2")])
    # Length prefixes: moving bytes between a name and its value changes the version.
    assert state_version([("ab", b"c")]) != state_version([("a", b"bc")])


def test_a_patch_waits_behind_the_running_and_queued_invocations_of_the_object() -> None:
    """Queued behind ``a`` (running) and ``b`` (inboxed, before it) and before ``c``: it applies
    when ``b`` ends, before ``c`` starts; neither ``a`` nor ``b`` sees it."""
    env = Env()
    env.invoke("a", COUNTER, request="a")
    env.effect("a", 1, JournalAppend(1, SetState("count", b"1")))
    env.invoke("b", COUNTER, request="b")
    answers = _patch(env, {"count": b"100"})
    env.invoke("c", COUNTER, request="c")
    assert answers == [] and _state(env) == {"count": b"1"}  # a holds the lock

    assert [s.invocation_id for s in _finish(env, "a", 2)] == ["b"]
    assert _state(env) == {"count": b"1"}  # b runs now; the patch waits behind it
    env.effect("b", 1, JournalAppend(1, GetState("count")))
    assert env.tx().entry("b", 1).completion == Success(b"1")  # type: ignore[union-attr]

    env.effect("b", 1, JournalAppend(2, Output(Success(b"1"))))
    actions = env.effect("b", 1, End())
    replies = [
        a.result for a in actions if isinstance(a, RespondToIngress) and a.sink.request_id == "p1"
    ]
    assert replies == [Success(state_version([("count", b"100")]).encode())]
    assert [a.invocation_id for a in actions if isinstance(a, StartInvocation)] == ["c"]
    assert _state(env) == {"count": b"100"}
    env.effect("c", 1, JournalAppend(1, GetState("count")))
    assert env.tx().entry("c", 1).completion == Success(b"100")  # type: ignore[union-attr]
    assert env.tx().lock_holder("Counter", "k1") == "c"


def test_a_queued_patch_checks_the_version_when_it_applies() -> None:
    """The version is compared with the state the patch finds at the head of the queue: a
    handler that ran before it changed the state, so the patch is refused."""
    env = Env()
    env.invoke("a", COUNTER, request="a")
    version = state_version(_state(env).items())
    _patch(env, {"count": b"100"}, version)
    env.effect("a", 1, JournalAppend(1, SetState("count", b"1")))
    actions = env.effect("a", 1, JournalAppend(2, Output(Success(b"1")))) + env.effect(
        "a", 1, End()
    )
    replies = [
        a.result for a in actions if isinstance(a, RespondToIngress) and a.sink.request_id == "p1"
    ]
    assert replies == [Failure(409, "state version mismatch")]
    assert _state(env) == {"count": b"1"}
    assert env.tx().lock_holder("Counter", "k1") is None


def test_a_patch_queued_behind_a_killed_holder_applies_when_the_kill_frees_the_lock() -> None:
    env = Env()
    env.invoke("a", COUNTER, request="a")
    _patch(env, {"count": b"7"})
    env.apply(Terminate("a", "kill"))
    assert _state(env) == {"count": b"7"}
    assert env.tx().lock("Counter", "k1") is None


def test_a_workflow_run_holds_the_lock_so_a_patch_waits_for_it() -> None:
    env = Env()
    env.invoke("w", RUN, request="w")
    assert env.tx().lock_holder("Order", "k1") == "w"
    env.apply(PatchState("Order", "k1", {"stage": b'"patched"'}))
    assert _state(env, "Order") == {}
    env.effect("w", 1, JournalAppend(1, Output(Success(b"1"))))
    env.effect("w", 1, End())
    assert _state(env, "Order") == {"stage": b'"patched"'}
    assert env.tx().lock_holder("Order", "k1") is None


def test_replaying_the_log_on_a_fresh_store_gives_the_same_state() -> None:
    env = Env()
    env.invoke("a", COUNTER, request="a")
    _patch(env, {"count": b"3"})
    _patch(env, {"count": b"4", "x": b"1"}, state_version([("count", b"3")]), request="p2")
    _finish(env, "a")
    _patch(env, {"y": b"2"}, request="p3")
    fresh = MemoryStore()
    replica = PartitionProcessor(fresh, 0, NODE)
    replica.apply_batch([LogEntry(lsn, env.record_at(lsn)) for lsn in range(env.lsn)])
    assert fresh.snapshot() == env.store.snapshot()
    assert read_state(fresh, 0, "Counter", "k1", 1 << 20) == ([("y", b"2")], True)


def test_inbox_rows_of_patches_and_invocation_ids_read_back_apart() -> None:
    tx = Transaction(MemoryStore(), 0)
    tx.enqueue_inbox("Counter", "k1", "inv_x")
    tx.enqueue_inbox("Counter", "k1", QueuedPatch({"a": b"1"}, "v"))
    assert tx.pop_inbox("Counter", "k1") == ("inv_x", 0)
    assert tx.pop_inbox("Counter", "k1") == (QueuedPatch({"a": b"1"}, "v"), 1)


def test_sys_inbox_shows_a_queued_patch_without_an_invocation_id() -> None:
    """The SQL table of inboxes reads both kinds of rows (a patch row is not UTF-8 text)."""
    env = Env()
    env.invoke("a", COUNTER, request="a")
    env.invoke("b", COUNTER, request="b")
    _patch(env, {"count": b"\xff"})
    rows = partition_rows(env.store, "sys_inbox", [0], budget=10)
    assert [row[4] for row in rows] == ["b", None]
