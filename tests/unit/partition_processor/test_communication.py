"""Calls, sends, responses, sleeps, awakeables, suspension and the outbox, on the pure core."""

import pytest

from partition_processor.actions import (
    NotifyInvocationId,
    NotifyInvoker,
    RegisterTimer,
    RespondToIngress,
    ShipOutbox,
    StartInvocation,
)
from partition_processor.commands import (
    CallerRef,
    End,
    Envelope,
    IngressSink,
    InvocationResponse,
    Invoke,
    JournalAppend,
    NotifySignal,
    PartitionSource,
    ProducerDedup,
    Purge,
    ResolvedTarget,
    Suspended,
    Target,
    TimerFired,
    TruncateOutbox,
    encode_envelope,
)
from partition_processor.ids import InvalidAwakeableId, awakeable_id, parse_awakeable_id
from partition_processor.journal import (
    Awakeable,
    Call,
    CallTarget,
    CompleteAwakeable,
    Failure,
    OneWayCall,
    Output,
    Sleep,
    Success,
    Void,
)
from partition_processor.tables import read_outbox
from tests.unit.partition_processor.env import NODE, Env

CALLEE = Target("Greeter", "greet")


def _call(env: Env, index: int = 1, resolved: bool = True) -> list[object]:
    command = Call(CallTarget("Greeter", "greet"), b'"x"')
    return env.effect(  # type: ignore[return-value]
        "a", 1, JournalAppend(index, command, ResolvedTarget(CALLEE) if resolved else None)
    )


def test_call_writes_an_invoke_to_the_outbox_and_tells_the_callee_id() -> None:
    env = Env()
    env.invoke("a")
    actions = _call(env)
    ((seq, message),) = read_outbox(env.store, 0)
    assert isinstance(message.command, Invoke)
    assert message.command.caller == CallerRef("a", 1)
    callee = message.command.invocation_id
    assert actions == [ShipOutbox(seq), NotifyInvocationId("a", 1, 1, callee)]
    entry = env.tx().entry("a", 1)
    assert entry is not None and isinstance(entry.command, Call)
    assert entry.command.invocation_id == callee


def test_call_ids_are_deterministic_for_a_replayed_journal() -> None:
    first, second = Env(), Env()
    for env in (first, second):
        env.invoke("a")
        _call(env)
    assert read_outbox(first.store, 0)[0][1] == read_outbox(second.store, 0)[0][1]


def test_unknown_callee_fails_the_call_with_404() -> None:
    env = Env()
    env.invoke("a")
    actions = _call(env, resolved=False)
    assert actions == [NotifyInvoker("a", 1, 1, Failure(404, "Greeter/greet not found"), 1)]


def test_callee_result_goes_back_to_the_caller_through_the_outbox() -> None:
    env = Env()
    env.invoke("a")
    _call(env)
    invoke = read_outbox(env.store, 0)[0][1].command
    assert isinstance(invoke, Invoke)
    env.apply(invoke)  # the callee happens to live on the same partition
    env.effect(invoke.invocation_id, 1, JournalAppend(1, Output(Success(b'"hi"'))))
    from partition_processor.commands import End

    env.effect(invoke.invocation_id, 1, End())
    response = read_outbox(env.store, 0)[-1][1].command
    assert response == InvocationResponse("a", 1, Success(b'"hi"'))
    assert env.apply(response) == [NotifyInvoker("a", 1, 1, Success(b'"hi"'), 1)]
    assert env.apply(response) == []  # a duplicate finds the entry completed


def test_delayed_send_is_scheduled_then_admitted_by_its_timer() -> None:
    env = Env()
    env.invoke("a")
    send = OneWayCall(CallTarget("Greeter", "greet"), b"1", invoke_at_ms=env.now_ms + 5_000)
    env.effect("a", 1, JournalAppend(1, send, ResolvedTarget(CALLEE)))
    invoke = read_outbox(env.store, 0)[0][1].command
    assert isinstance(invoke, Invoke) and invoke.caller is None
    actions = env.apply(invoke)
    assert actions == [RegisterTimer(env.now_ms + 5_000, f"invoke:{invoke.invocation_id}")]
    assert env.status(invoke.invocation_id).phase == "scheduled"  # type: ignore[union-attr]
    fired = env.apply(TimerFired(env.now_ms + 5_000, f"invoke:{invoke.invocation_id}"), leader=True)
    assert fired == [StartInvocation(invoke.invocation_id, 1)]


def test_sleep_completes_when_its_timer_fires() -> None:
    env = Env()
    env.invoke("a")
    actions = env.effect("a", 1, JournalAppend(1, Sleep(9_000)))
    assert actions == [RegisterTimer(9_000, "sleep:a:1")]
    fired = env.apply(TimerFired(9_000, "sleep:a:1"), leader=True)
    assert fired == [NotifyInvoker("a", 1, 1, Void(), 1)]


def test_suspended_invocation_resumes_with_a_new_attempt_when_awaited_entry_completes() -> None:
    env = Env()
    env.invoke("a")
    env.effect("a", 1, JournalAppend(1, Sleep(9_000)))
    assert env.effect("a", 1, Suspended([1])) == []
    assert env.status("a").phase == "suspended"  # type: ignore[union-attr]
    fired = env.apply(TimerFired(9_000, "sleep:a:1"), leader=True)
    assert fired == [StartInvocation("a", 2)]
    entry = env.tx().entry("a", 1)
    assert entry is not None and entry.completion == Void() and entry.completion_seq == 1


def test_suspension_after_the_completion_already_arrived_resumes_at_once() -> None:
    env = Env()
    env.invoke("a")
    env.effect("a", 1, JournalAppend(1, Sleep(9_000)))
    env.apply(TimerFired(9_000, "sleep:a:1"), leader=True)
    assert env.effect("a", 1, Suspended([1])) == [StartInvocation("a", 2)]


def test_awakeable_is_completed_once_and_answers_404_and_409() -> None:
    env = Env()
    env.invoke("a")
    env.effect("a", 1, JournalAppend(1, Awakeable()))
    sink = IngressSink(NODE, "rq")
    done = env.apply(NotifySignal("a", 1, Success(b"7"), sink))
    assert done == [
        NotifyInvoker("a", 1, 1, Success(b"7"), 1),
        RespondToIngress(sink, "a", Success(b"")),
    ]
    again = env.apply(NotifySignal("a", 1, Success(b"8"), sink))
    assert again == [RespondToIngress(sink, "a", Failure(409, "awakeable already completed"))]
    missing = env.apply(NotifySignal("a", 7, Success(b"8"), sink))
    assert isinstance(missing[0], RespondToIngress) and missing[0].result.code == 404  # type: ignore[union-attr]


def test_awakeable_ids_round_trip_and_reject_garbage() -> None:
    owner = "inv_" + "a" * 16 + "b" * 32
    assert parse_awakeable_id(awakeable_id(owner, 42)) == (owner, 42)
    for bad in ("", "sign_1", "sign_1!!!", "prom_1abc", awakeable_id(owner, 1)[:-3]):
        with pytest.raises(InvalidAwakeableId):
            parse_awakeable_id(bad)


def test_resolving_another_awakeable_from_a_handler_goes_through_the_outbox() -> None:
    env = Env()
    env.invoke("a")
    owner = "inv_" + "1" * 16 + "2" * 32
    command = CompleteAwakeable(awakeable_id(owner, 3), Success(b"1"))
    env.effect("a", 1, JournalAppend(1, command))
    message = read_outbox(env.store, 0)[0][1]
    assert message.route == owner
    assert message.command == NotifySignal(owner, 3, Success(b"1"))


def test_producer_dedup_drops_repeated_sequences_and_truncate_clears_the_outbox() -> None:
    env = Env()
    invoke = Invoke("b", CALLEE, b"1")
    record = encode_envelope(
        Envelope(PartitionSource(3), env.now_ms, invoke, ProducerDedup("partition-3", 5))
    )
    assert env.apply_raw(record) == [StartInvocation("b", 1)]
    assert env.apply_raw(record) == []
    env.invoke("a")
    _call(env)
    assert read_outbox(env.store, 0)
    env.apply(TruncateOutbox(10), leader=True)
    assert read_outbox(env.store, 0) == []


def test_an_outbox_message_shipped_again_after_its_callee_was_purged_does_not_run_again() -> None:
    """The producer dedup is the only guard here: once the invocation is purged, its id is
    unknown again, so without the dedup a repeat of the same message would start it afresh."""
    env = Env()
    invoke = Invoke("b", CALLEE, b"1", completion_retention_ms=60_000)
    record = encode_envelope(
        Envelope(PartitionSource(3), env.now_ms, invoke, ProducerDedup("partition-3", 5))
    )
    assert env.apply_raw(record) == [StartInvocation("b", 1)]
    env.effect("b", 1, JournalAppend(1, Output(Success(b"1"))))
    env.effect("b", 1, End())
    env.apply(Purge("b"))
    assert env.status("b") is None
    # The source partition's leader crashed before truncating its outbox: it ships again.
    assert env.apply_raw(record) == []
    assert env.status("b") is None
