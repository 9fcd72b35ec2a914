"""Workflows, promises, attach, cancel, kill and purge on the pure core."""

from partition_processor.actions import (
    AbortInvocation,
    CancelInvocation,
    NotifyInvoker,
    RespondToIngress,
    SendReceipt,
    StartInvocation,
)
from partition_processor.commands import (
    Attach,
    End,
    IngressSink,
    Invoke,
    JournalAppend,
    Purge,
    ResolvedTarget,
    Suspended,
    Target,
    Terminate,
    TimerFired,
)
from partition_processor.journal import (
    Call,
    CallTarget,
    CompletePromise,
    Failure,
    GetPromise,
    Output,
    PeekPromise,
    SetState,
    Sleep,
    Success,
    Void,
)
from partition_processor.state_machine.on_terminate import CANCEL_SIGNALLED, CANCELLED
from partition_processor.tables import read_outbox
from tests.unit.partition_processor.env import COUNTER, GREETER, NODE, Env

RUN = Target("Order", "run", "workflow", "workflow", key="o1")
SIGNAL = Target("Order", "approve", "workflow", "shared", key="o1")


def _submit(env: Env, request: str, retention_ms: int = 60_000) -> list[object]:
    return env.apply(  # type: ignore[return-value]
        Invoke(
            "wf",
            RUN,
            b"{}",
            sink=IngressSink(NODE, request),
            submission=True,
            completion_retention_ms=retention_ms,
        )
    )


def test_workflow_runs_once_and_a_second_submission_gets_409() -> None:
    env = Env()
    assert _submit(env, "r1") == [StartInvocation("wf", 1)]
    (again,) = _submit(env, "r2")
    assert isinstance(again, RespondToIngress) and again.result.code == 409  # type: ignore[union-attr]
    assert _submit(env, "r1") == []  # the same request delivered twice is not refused


def test_promise_resolved_by_a_shared_handler_wakes_the_suspended_run() -> None:
    env = Env()
    _submit(env, "r1")
    assert env.effect("wf", 1, JournalAppend(1, GetPromise("approval"))) == []
    env.effect("wf", 1, Suspended([1]))
    env.invoke("sig", SIGNAL)
    actions = env.effect("sig", 1, JournalAppend(1, CompletePromise("approval", Success(b"true"))))
    assert StartInvocation("wf", 2) in actions
    assert NotifyInvoker("sig", 1, 1, Void(), 1) in actions
    entry = env.tx().entry("wf", 1)
    assert entry is not None and entry.completion == Success(b"true")


def test_promise_resolved_before_it_is_awaited_is_delivered_and_cannot_resolve_twice() -> None:
    env = Env()
    _submit(env, "r1")
    env.invoke("sig", SIGNAL)
    env.effect("sig", 1, JournalAppend(1, CompletePromise("p", Success(b"1"))))
    second = env.effect("sig", 1, JournalAppend(2, CompletePromise("p", Success(b"2"))))
    assert second == [
        NotifyInvoker("sig", 1, 2, Failure(409, "promise 'p' is already completed"), 2)
    ]
    assert env.effect("wf", 1, JournalAppend(1, PeekPromise("p"))) == [
        NotifyInvoker("wf", 1, 1, Success(b"1"), 1)
    ]
    assert env.effect("wf", 1, JournalAppend(2, GetPromise("p"))) == [
        NotifyInvoker("wf", 1, 2, Success(b"1"), 2)
    ]


def test_workflow_state_and_promises_are_purged_after_retention() -> None:
    env = Env()
    _submit(env, "r1", retention_ms=1_000)
    env.effect("wf", 1, JournalAppend(1, SetState("s", b"1")))
    env.effect("wf", 1, JournalAppend(2, CompletePromise("p", Success(b"1"))))
    env.effect("wf", 1, JournalAppend(3, Output(Success(b"done"))))
    env.effect("wf", 1, End())
    assert env.tx().state_value("Order", "o1", "s") == b"1"
    env.apply(TimerFired(env.now_ms + 1_000, "purge:wf"), leader=True)
    assert env.status("wf") is None
    assert env.tx().state_value("Order", "o1", "s") is None
    assert env.tx().promise("Order", "o1", "p") is None


def test_attach_waits_or_answers_and_output_is_470_while_running() -> None:
    env = Env()
    env.invoke("a", retention_ms=60_000)
    sink = IngressSink(NODE, "att")
    not_ready = Failure(470, "the invocation has not completed yet")
    # Refused: the failure is the partition's answer, not the invocation's outcome.
    assert env.apply(Attach("a", sink, wait=False)) == [
        RespondToIngress(sink, "a", not_ready, refused=True)
    ]
    assert env.apply(Attach("a", sink)) == []
    env.effect("a", 1, JournalAppend(1, Output(Success(b"7"))))
    done = RespondToIngress(sink, "a", Success(b"7"), target=GREETER)
    assert done in env.effect("a", 1, End())
    assert env.apply(Attach("a", sink, wait=False)) == [done]
    (missing,) = env.apply(Attach("nope", sink))
    assert isinstance(missing, RespondToIngress) and missing.refused
    assert missing.result.code == 404  # type: ignore[union-attr]


def test_cancel_is_delivered_to_the_running_attempt_and_to_open_calls() -> None:
    env = Env()
    env.invoke("a")
    callee = ResolvedTarget(Target("Greeter", "greet"))
    env.effect("a", 1, JournalAppend(1, Call(CallTarget("Greeter", "greet"), b"1"), callee))
    sink = IngressSink(NODE, "admin")
    actions = env.apply(Terminate("a", "cancel", sink))
    assert CancelInvocation("a", 1, 1) in actions
    assert RespondToIngress(sink, "a", CANCEL_SIGNALLED) in actions
    child = read_outbox(env.store, 0)[-1][1].command
    assert isinstance(child, Terminate) and child.mode == "cancel"
    assert env.status("a").cancel_seq == 1  # type: ignore[union-attr]


def test_cancel_of_a_suspended_invocation_resumes_it() -> None:
    env = Env()
    env.invoke("a")
    env.effect("a", 1, JournalAppend(1, Sleep(99_000)))
    env.effect("a", 1, Suspended([1]))
    assert StartInvocation("a", 2) in env.apply(Terminate("a", "cancel"))


def test_kill_releases_the_lock_and_the_next_queued_call_runs() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    env.invoke("b", COUNTER)
    actions = env.apply(Terminate("a", "kill"))
    assert AbortInvocation("a") in actions
    assert StartInvocation("b", 1) in actions
    respond = [a for a in actions if isinstance(a, RespondToIngress)]
    assert respond[0].result == Failure(409, "killed")


def test_purge_only_completed_invocations() -> None:
    env = Env()
    env.invoke("a", retention_ms=60_000)
    sink = IngressSink(NODE, "admin")
    (running,) = env.apply(Purge("a", sink))
    assert running.result.code == 409  # type: ignore[union-attr]
    env.effect("a", 1, JournalAppend(1, Output(Success(b"1"))))
    env.effect("a", 1, End())
    assert env.apply(Purge("a", sink)) == [RespondToIngress(sink, "a", Success(b""))]
    assert env.status("a") is None


def test_a_purged_runs_retention_timer_does_not_purge_the_next_run_of_the_key() -> None:
    env = Env()
    _submit(env, "r1", retention_ms=1_000)
    env.effect("wf", 1, JournalAppend(1, Output(Success(b"first"))))
    env.effect("wf", 1, End())
    first_wake_ms = env.now_ms + 1_000
    [purged] = env.apply(Purge("wf", IngressSink(NODE, "admin")))
    assert isinstance(purged, RespondToIngress) and purged.result == Success(b"")
    assert env.tx().timer(first_wake_ms, "purge:wf") is None
    env.now_ms += 500
    _submit(env, "r2", retention_ms=1_000)
    env.effect("wf", 1, JournalAppend(1, Output(Success(b"second"))))
    env.effect("wf", 1, End())
    assert env.apply(TimerFired(first_wake_ms, "purge:wf"), leader=True) == []
    status = env.status("wf")
    assert status is not None and status.result == Success(b"second")
    env.apply(TimerFired(env.now_ms + 1_000, "purge:wf"), leader=True)
    assert env.status("wf") is None


def test_a_cancel_ends_a_queued_invocation_at_once_and_signals_a_running_one() -> None:
    """Restate answers 200 for the first (done) and 202 for the second (appended)."""
    env = Env()
    env.invoke("holder", COUNTER)
    env.invoke("queued", COUNTER)
    sink = IngressSink(NODE, "admin")
    queued = env.apply(Terminate("queued", "cancel", sink))
    assert RespondToIngress(sink, "queued", Success(b"")) in queued
    cancelled = RespondToIngress(IngressSink(NODE, "r1"), "queued", CANCELLED, target=COUNTER)
    assert cancelled in queued  # its caller has its answer: it never ran
    running = env.apply(Terminate("holder", "cancel", sink))
    assert RespondToIngress(sink, "holder", CANCEL_SIGNALLED) in running
    again = env.apply(Terminate("holder", "cancel", sink))
    assert again == [RespondToIngress(sink, "holder", CANCEL_SIGNALLED)]


def test_a_send_learns_whether_it_created_the_invocation_and_when_it_runs() -> None:
    env = Env()
    receipt = IngressSink(NODE, "send-1")
    at_ms = env.now_ms + 5_000
    first = env.apply(Invoke("d", GREETER, b"1", receipt_sink=receipt, invoke_at_ms=at_ms))
    assert RespondToIngress(receipt, "d", Success(b""), receipt=SendReceipt(True, at_ms)) in first
    again = env.apply(Invoke("d", GREETER, b"1", receipt_sink=receipt, invoke_at_ms=at_ms + 7))
    assert again == [
        RespondToIngress(receipt, "d", Success(b""), receipt=SendReceipt(False, at_ms))
    ]
    now = env.apply(Invoke("n", GREETER, b"1", receipt_sink=receipt))
    assert RespondToIngress(receipt, "n", Success(b""), receipt=SendReceipt(True, 0)) in now
