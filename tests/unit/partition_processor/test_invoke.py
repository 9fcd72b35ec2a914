from partition_processor.actions import RespondToIngress, StartInvocation
from partition_processor.commands import End, IngressSink, JournalAppend
from partition_processor.journal import Input, Output, Success
from tests.unit.partition_processor.env import COUNTER, COUNTER_GET, GREETER, NODE, Env


def test_invoke_starts_first_attempt_with_input_entry() -> None:
    env = Env()
    actions = env.invoke("inv1")
    assert actions == [StartInvocation("inv1", 1)]
    status = env.status("inv1")
    assert status is not None and status.phase == "invoked" and status.attempt == 1
    entry = env.tx().entry("inv1", 0)
    assert entry is not None and entry.command == Input(b'"x"', [])


def test_duplicate_invoke_attaches_new_sink_and_does_not_restart() -> None:
    env = Env()
    env.invoke("inv1", request="r1")
    assert env.invoke("inv1", request="r2") == []
    status = env.status("inv1")
    assert status is not None
    assert status.sinks == [IngressSink(NODE, "r1"), IngressSink(NODE, "r2")]
    assert env.invoke("inv1", request="r2") == []  # the same duplicate twice adds nothing
    assert len(env.status("inv1").sinks) == 2  # type: ignore[union-attr]


def test_completed_invocation_answers_duplicates_from_retained_result() -> None:
    env = Env()
    env.invoke("inv1", retention_ms=60_000)
    env.effect("inv1", 1, JournalAppend(1, Output(Success(b"1"))))
    done = env.effect("inv1", 1, End())
    first = IngressSink(NODE, "r1")
    assert RespondToIngress(first, "inv1", Success(b"1"), target=GREETER) in done
    again = env.invoke("inv1", request="r9")
    repeat = IngressSink(NODE, "r9")
    assert again == [RespondToIngress(repeat, "inv1", Success(b"1"), target=GREETER)]


def test_exclusive_handlers_queue_per_key_and_run_in_order() -> None:
    env = Env()
    assert env.invoke("a", COUNTER) == [StartInvocation("a", 1)]
    assert env.invoke("b", COUNTER) == []
    assert env.invoke("c", COUNTER) == []
    assert env.status("b").phase == "inboxed"  # type: ignore[union-attr]
    env.effect("a", 1, JournalAppend(1, Output(Success(b"1"))))
    actions = env.effect("a", 1, End())
    assert StartInvocation("b", 1) in actions
    env.effect("b", 1, JournalAppend(1, Output(Success(b"2"))))
    assert StartInvocation("c", 1) in env.effect("b", 1, End())
    env.effect("c", 1, JournalAppend(1, Output(Success(b"3"))))
    env.effect("c", 1, End())
    assert env.tx().lock_holder("Counter", "k1") is None


def test_shared_handler_runs_while_exclusive_holds_the_lock() -> None:
    env = Env()
    env.invoke("a", COUNTER)
    assert env.invoke("g", COUNTER_GET) == [StartInvocation("g", 1)]
