"""The replay engine without I/O: journal cursor, mismatch detection, completions, output."""

from __future__ import annotations

import pytest

from proto import endpoint_pb2 as pb
from sdk._engine.machine import InvocationMachine
from sdk.errors import JournalMismatch


def _entry(
    index: int, command: pb.JournalCommand, completion: pb.Completion | None = None, seq: int = 0
) -> pb.JournalEntry:
    entry = pb.JournalEntry(index=index, command=command, completion_seq=seq)
    if completion is not None:
        entry.completion.CopyFrom(completion)
    return entry


def _input() -> pb.JournalEntry:
    return _entry(0, pb.JournalCommand(input=pb.InputCommand(value=b'"x"')))


def _run(name: str) -> pb.JournalCommand:
    return pb.JournalCommand(run=pb.RunCommand(name=name))


def _machine(*entries: pb.JournalEntry) -> InvocationMachine:
    start = pb.Start(invocation_id="inv_x", known_entries=len(entries) + 1)
    return InvocationMachine(start, [_input(), *entries])


def test_new_commands_are_proposed_with_consecutive_indices() -> None:
    machine = _machine()
    assert machine.sys_command(_run("a")) == 1
    assert machine.sys_command(_run("b")) == 2
    output = machine.take_output()
    assert [m.command.index for m in output] == [1, 2]
    assert [m.command.command.run.name for m in output] == ["a", "b"]
    assert machine.take_output() == []


def test_replayed_commands_are_not_sent_again_and_keep_their_completion() -> None:
    done = pb.Completion(value=b"1")
    machine = _machine(_entry(1, _run("a"), done, seq=1))
    assert machine.replaying
    assert machine.sys_command(_run("a")) == 1
    assert machine.take_output() == []
    completed = machine.completion(1)
    assert completed is not None and completed.completion.value == b"1" and completed.seq == 1
    assert not machine.replaying
    assert machine.sys_command(_run("b")) == 2
    assert len(machine.take_output()) == 1


@pytest.mark.parametrize(
    ("recorded", "now", "named"),
    [
        (_run("a"), _run("b"), "run('b')"),
        (_run("a"), pb.JournalCommand(get_state=pb.GetStateCommand(key="k")), "get_state('k')"),
        (
            pb.JournalCommand(set_state=pb.SetStateCommand(key="k", value=b"1")),
            pb.JournalCommand(set_state=pb.SetStateCommand(key="k", value=b"2")),
            "set_state('k')",
        ),
    ],
)
def test_a_different_action_on_replay_is_a_mismatch_naming_the_entry(
    recorded: pb.JournalCommand, now: pb.JournalCommand, named: str
) -> None:
    machine = _machine(_entry(1, recorded))
    with pytest.raises(JournalMismatch) as raised:
        machine.sys_command(now)
    assert raised.value.index == 1
    assert "entry 1" in str(raised.value) and named in str(raised.value)


def test_a_sleep_replays_with_a_different_wake_up_time() -> None:
    recorded = pb.JournalCommand(sleep=pb.SleepCommand(wake_up_ms=1000))
    machine = _machine(_entry(1, recorded))
    assert machine.sys_command(pb.JournalCommand(sleep=pb.SleepCommand(wake_up_ms=5000))) == 1


def test_notifications_complete_entries_once_and_carry_callee_ids() -> None:
    machine = _machine()
    index = machine.sys_command(_run("a"))
    machine.notify(pb.Notification(index=index, invocation_id="inv_callee"))
    assert machine.callee_id(index) == "inv_callee"
    assert machine.completion(index) is None
    machine.notify(
        pb.Notification(index=index, completion=pb.Completion(value=b"1"), completion_seq=3)
    )
    machine.notify(
        pb.Notification(index=index, completion=pb.Completion(value=b"2"), completion_seq=4)
    )
    completed = machine.completion(index)
    assert completed is not None and completed.completion.value == b"1" and completed.seq == 3


def test_run_completion_is_not_proposed_for_an_already_completed_step() -> None:
    machine = _machine(_entry(1, _run("a"), pb.Completion(value=b"1"), seq=1))
    machine.sys_command(_run("a"))
    machine.sys_run_completion(1, pb.ProposeRunCompletion(value=b"other"))
    assert machine.take_output() == []


def test_nothing_is_sent_after_the_attempt_closed() -> None:
    machine = _machine()
    machine.sys_suspend([1])
    machine.sys_command(_run("late"))
    output = machine.take_output()
    assert [m.WhichOneof("kind") for m in output] == ["suspension"]


def test_cancel_keeps_the_first_cancellation_point() -> None:
    machine = _machine()
    machine.notify_cancel(5)
    machine.notify_cancel(9)
    assert machine.cancel_seq == 5


def test_a_replay_only_start_stops_at_the_end_of_the_journal() -> None:
    from sdk.errors import ReplayExhausted

    journal = [_input(), _entry(1, _run("a"), pb.Completion(value=b"1"), seq=1)]
    machine = InvocationMachine(pb.Start(invocation_id="inv_x", replay_only=True), journal)
    assert machine.sys_command(_run("a")) == 1  # replayed: fine
    with pytest.raises(ReplayExhausted):
        machine.sys_command(_run("b"))  # past the journal: nothing new is proposed
    assert machine.take_output() == []
    mismatching = InvocationMachine(pb.Start(invocation_id="inv_x", replay_only=True), journal)
    with pytest.raises(JournalMismatch) as raised:
        mismatching.sys_command(_run("other"))
    assert raised.value.index == 1
