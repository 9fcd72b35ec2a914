from partition_processor.actions import NotifyInvoker, RegisterTimer, RespondToIngress
from partition_processor.commands import (
    CompleteRun,
    End,
    Failed,
    IngressSink,
    JournalAppend,
    RetryPolicy,
)
from partition_processor.journal import (
    ClearAllState,
    ClearState,
    Failure,
    GetState,
    GetStateKeys,
    Output,
    Run,
    SetState,
    StateKeys,
    Success,
    Void,
)
from tests.unit.partition_processor.env import COUNTER, COUNTER_GET, GREETER, NODE, Env


def test_state_commands_read_and_write_object_state() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    assert env.effect("a", 1, JournalAppend(1, GetState("n"))) == [
        NotifyInvoker("a", 1, 1, Void(), 1)
    ]
    env.effect("a", 1, JournalAppend(2, SetState("n", b"5")))
    env.effect("a", 1, JournalAppend(3, SetState("m", b"6")))
    assert env.effect("a", 1, JournalAppend(4, GetState("n"))) == [
        NotifyInvoker("a", 1, 4, Success(b"5"), 2)
    ]
    assert env.effect("a", 1, JournalAppend(5, GetStateKeys())) == [
        NotifyInvoker("a", 1, 5, StateKeys(["m", "n"]), 3)
    ]
    env.effect("a", 1, JournalAppend(6, ClearState("m")))
    assert env.tx().state_names("Counter", "k1") == ["n"]
    env.effect("a", 1, JournalAppend(7, ClearAllState()))
    assert env.tx().state_names("Counter", "k1") == []


def test_shared_handler_cannot_write_state() -> None:
    env = Env()
    env.invoke("g", COUNTER_GET)
    env.effect("g", 1, JournalAppend(1, SetState("n", b"1")))
    assert env.tx().state_value("Counter", "k1", "n") is None


def test_duplicate_or_out_of_order_entries_are_dropped() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    env.effect("a", 1, JournalAppend(1, SetState("n", b"1")))
    env.effect("a", 1, JournalAppend(1, SetState("n", b"2")))  # duplicate index
    env.effect("a", 1, JournalAppend(5, SetState("n", b"3")))  # gap
    assert env.tx().state_value("Counter", "k1", "n") == b"1"
    assert env.status("a").journal_length == 2  # type: ignore[union-attr]


def test_run_completion_is_recorded_once() -> None:
    env = Env()
    env.invoke("a")
    env.effect("a", 1, JournalAppend(1, Run("step")))
    first = env.effect("a", 1, CompleteRun(1, Success(b"1")))
    assert first == [NotifyInvoker("a", 1, 1, Success(b"1"), 1)]
    assert env.effect("a", 1, CompleteRun(1, Success(b"2"))) == []
    entry = env.tx().entry("a", 1)
    assert entry is not None and entry.completion == Success(b"1")


def test_stale_attempt_effects_are_dropped() -> None:
    env = Env()
    env.invoke("a")
    assert env.effect("a", 2, JournalAppend(1, Run("x"))) == []
    assert env.status("a").journal_length == 1  # type: ignore[union-attr]


def test_deposed_leader_records_are_fenced() -> None:
    env = Env()
    env.invoke("a")
    env.become_leader()
    env.apply(
        __import__("partition_processor.commands", fromlist=["InvokerEffect"]).InvokerEffect(
            "a", 1, JournalAppend(1, Run("x"))
        ),
        leader=True,
        epoch=env.epoch - 1,
    )
    assert env.status("a").journal_length == 1  # type: ignore[union-attr]


def test_retryable_failure_backs_off_then_timer_starts_next_attempt() -> None:
    from partition_processor.actions import StartInvocation
    from partition_processor.commands import TimerFired

    env = Env()
    env.invoke("a", policy=RetryPolicy(initial_interval_ms=100, factor=2, max_interval_ms=1000))
    actions = env.effect("a", 1, Failed(500, "boom", True))
    assert actions == [RegisterTimer(env.now_ms + 100, "retry:a:1")]
    status = env.status("a")
    assert status is not None and status.phase == "backing_off"
    assert status.last_failure is not None and status.last_failure.message == "boom"
    fired = env.apply(TimerFired(env.now_ms + 100, "retry:a:1"), leader=True)
    assert fired == [StartInvocation("a", 2)]
    assert env.apply(TimerFired(env.now_ms + 100, "retry:a:1"), leader=True) == []
    backoff = env.effect("a", 2, Failed(500, "boom", True))
    assert backoff == [RegisterTimer(env.now_ms + 200, "retry:a:2")]


def test_terminal_failure_and_exhausted_attempts_complete_with_failure() -> None:
    env = Env()
    env.invoke("a")
    done = env.effect("a", 1, Failed(400, "bad", False))
    sink = IngressSink(NODE, "r1")
    assert done == [RespondToIngress(sink, "a", Failure(400, "bad"), target=GREETER)]
    env.invoke("b", policy=RetryPolicy(max_attempts=1))
    exhausted = env.effect("b", 1, Failed(500, "boom", True))
    assert exhausted == [RespondToIngress(sink, "b", Failure(500, "boom"), target=GREETER)]


def test_end_without_output_fails_and_journal_is_deleted() -> None:
    env = Env()
    env.invoke("a")
    done = env.effect("a", 1, End())
    assert isinstance(done[0], RespondToIngress) and isinstance(done[0].result, Failure)
    assert env.status("a") is None
    assert env.tx().entry("a", 0) is None


def test_retention_purge_timer_forgets_completed_invocation() -> None:
    from partition_processor.commands import TimerFired

    env = Env()
    env.invoke("a", retention_ms=5_000)
    env.effect("a", 1, JournalAppend(1, Output(Success(b"1"))))
    actions = env.effect("a", 1, End())
    assert RegisterTimer(env.now_ms + 5_000, "purge:a") in actions
    env.apply(TimerFired(env.now_ms + 5_000, "purge:a"), leader=True)
    assert env.status("a") is None
