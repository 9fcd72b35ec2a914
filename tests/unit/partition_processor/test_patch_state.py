"""``PatchState``: an operator's state edit goes through the log and never lands under a running
invocation of the object."""

from __future__ import annotations

import msgspec

from partition_processor import keys
from partition_processor.actions import Action, RespondToIngress, StartInvocation
from partition_processor.commands import (
    End,
    IngressSink,
    IngressSource,
    JournalAppend,
    PatchState,
    Target,
    Terminate,
    decode_envelope,
)
from partition_processor.journal import Failure, GetState, Output, Result, SetState, Success
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.state_machine.on_patch_state import PATCH_DEDUP_RETENTION_MS
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import Transaction, decode_inbox, read_state, state_version
from partition_processor.values import QueuedPatch
from runtime.admin.sql_tables import partition_rows
from tests.unit.partition_processor.env import COUNTER, NODE, Env

RUN = Target("Order", "run", "workflow", "workflow", key="k1")


def _state(env: Env, service: str = "Counter") -> dict[str, bytes]:
    return env.tx().object_state(service, "k1")


def _patch(
    env: Env, new_state: dict[str, bytes], version: str | None = None, request: str = "p1"
) -> list[RespondToIngress]:
    command = PatchState(
        "Counter", "k1", new_state, version, IngressSink(NODE, request), patch_id=f"id-{request}"
    )
    return [a for a in env.apply(command) if isinstance(a, RespondToIngress)]


def _answers(actions: list[Action], request: str = "p1") -> list[Result]:
    return [
        a.result
        for a in actions
        if isinstance(a, RespondToIngress) and a.sink.request_id == request
    ]


def _add(env: Env, name: str, count: bytes) -> None:
    """An invocation of the object that writes its state, runs and ends."""
    env.invoke(name, COUNTER, request=name)
    env.effect(name, 1, JournalAppend(1, SetState("count", count)))
    _finish(env, name, 2)


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
    tx.enqueue_inbox("Counter", "k1", "inv_x", tx.lock("Counter", "k1"))
    tx.enqueue_inbox("Counter", "k1", QueuedPatch({"a": b"1"}, "v"), tx.lock("Counter", "k1"))
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


# -- a patch applies once, however often the log holds its record (DESIGN §10)


def test_a_copy_of_an_applied_patch_after_other_writes_is_dropped_and_answered_alike() -> None:
    """Unversioned, so no version check would stop the copy: without the patch id it would
    replace the state again and undo the add that ran in between."""
    env = Env()
    first = _answers(env.apply_raw(env.record(_command({"count": b"5"}))))
    record = env.record_at(env.lsn - 1)
    _add(env, "a", b"6")
    again = env.apply_raw(record)
    assert _state(env) == {"count": b"6"}
    assert _answers(again) == first == [Success(state_version([("count", b"5")]).encode())]


def test_a_copy_arriving_while_the_first_is_queued_is_not_queued_again() -> None:
    """``a`` holds the lock, the patch queues, ``b`` queues behind it, then the copy arrives:
    queued again it would apply after ``b`` and undo ``b``'s write."""
    env = Env()
    env.invoke("a", COUNTER, request="a")
    env.apply(_command({"count": b"100"}))
    env.invoke("b", COUNTER, request="b")
    assert _answers(env.apply_raw(env.record_at(env.lsn - 2))) == []  # the first copy answers
    queued = [v for k, v in env.store.scan(keys.partition_prefix(keys.Kind.INBOX, 0))]
    assert len(queued) == 2  # b and one patch

    actions = _finish(env, "a", 1)
    assert [s.invocation_id for s in actions] == ["b"]
    assert _state(env) == {"count": b"100"}
    env.effect("b", 1, JournalAppend(1, SetState("count", b"101")))
    ended = env.effect("b", 1, JournalAppend(2, Output(Success(b"1")))) + env.effect("b", 1, End())
    assert _answers(ended) == []
    assert _state(env) == {"count": b"101"}
    assert env.tx().lock("Counter", "k1") is None


def test_a_queued_patch_answers_once_when_it_applies() -> None:
    env = Env()
    env.invoke("a", COUNTER, request="a")
    env.apply(_command({"count": b"7"}))
    env.apply_raw(env.record_at(env.lsn - 1))
    env.effect("a", 1, JournalAppend(1, Output(Success(b"1"))))
    answers = _answers(env.effect("a", 1, End()))
    assert answers == [Success(state_version([("count", b"7")]).encode())]


def test_a_copy_appended_after_the_retention_applies_again() -> None:
    """The ids are kept ``PATCH_DEDUP_RETENTION_MS`` of record time after their decision: a copy
    appended later than that (no producer retry or ingress timeout comes so late) is a new
    patch, as every copy was before patches had ids. Older ids are pruned at the next patch."""
    env = Env()
    env.apply(_command({"count": b"5"}))
    _add(env, "a", b"6")
    env.now_ms += PATCH_DEDUP_RETENTION_MS
    env.apply(_command({"count": b"5"}))  # at the edge of the window: still a copy
    assert _state(env) == {"count": b"6"}
    env.now_ms += 1
    answers = _answers(env.apply(_command({"count": b"5"})))
    assert _state(env) == {"count": b"5"}
    assert answers == [Success(state_version([("count", b"5")]).encode())]
    env.now_ms += PATCH_DEDUP_RETENTION_MS + 1
    env.apply(_command({"x": b"1"}, patch_id="other"))
    assert [p.patch_id for p in env.tx().seen_patches("Counter", "k1").patches] == ["other"]


def test_a_patch_without_an_id_applies_every_copy_as_before() -> None:
    """Records written before patches had ids decode with an empty id: nothing to match."""
    env = Env()
    record = env.record(_command({"count": b"5"}, patch_id=""))
    env.apply_raw(record)
    _add(env, "a", b"6")
    env.apply_raw(record)
    assert _state(env) == {"count": b"5"}
    assert env.tx().seen_patches("Counter", "k1").patches == []


class _PatchStateBeforeIds(msgspec.Struct, tag="patch_state", frozen=True):
    service: str
    key: str
    new_state: dict[str, bytes]
    version: str | None = None
    sink: IngressSink | None = None


class _EnvelopeBeforeIds(msgspec.Struct, frozen=True):
    source: IngressSource
    timestamp_ms: int
    command: _PatchStateBeforeIds


class _QueuedPatchBeforeIds(msgspec.Struct, array_like=True, frozen=True):
    new_state: dict[str, bytes]
    version: str | None = None
    sink: IngressSink | None = None


def test_records_and_inbox_rows_written_before_patch_ids_decode_with_an_empty_id() -> None:
    old = _EnvelopeBeforeIds(
        IngressSource(NODE), 1, _PatchStateBeforeIds("Counter", "k1", {"a": b"1"})
    )
    command = decode_envelope(msgspec.msgpack.encode(old)).command
    assert command == PatchState("Counter", "k1", {"a": b"1"}, patch_id="")
    row = msgspec.msgpack.encode(_QueuedPatchBeforeIds({"a": b"1"}, "v"))
    assert decode_inbox(row) == QueuedPatch({"a": b"1"}, "v", None, "")


def test_replaying_a_log_with_repeated_patches_on_a_fresh_store_gives_the_same_store() -> None:
    env = Env()
    env.apply(_command({"count": b"1"}))
    env.apply_raw(env.record_at(env.lsn - 1))
    env.invoke("a", COUNTER, request="a")
    env.apply(_command({"count": b"2"}, patch_id="id-2", request="p2"))
    env.invoke("b", COUNTER, request="b")
    env.apply_raw(env.record_at(env.lsn - 2))
    _finish(env, "a")
    env.effect("b", 1, JournalAppend(1, SetState("count", b"3")))
    _finish(env, "b", 2)
    env.apply_raw(env.record_at(1), env.record_at(3))
    assert _state(env) == {"count": b"3"}
    fresh = MemoryStore()
    replica = PartitionProcessor(fresh, 0, NODE)
    replica.apply_batch([LogEntry(lsn, env.record_at(lsn)) for lsn in range(env.lsn)])
    assert fresh.snapshot() == env.store.snapshot()


def _command(
    new_state: dict[str, bytes], *, patch_id: str = "id-p1", request: str = "p1"
) -> PatchState:
    return PatchState(
        "Counter", "k1", new_state, None, IngressSink(NODE, request), patch_id=patch_id
    )
