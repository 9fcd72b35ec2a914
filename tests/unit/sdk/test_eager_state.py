"""The replay engine answering state reads from ``Start.eager_state`` (no round trip)."""

from __future__ import annotations

from proto import endpoint_pb2 as pb
from sdk._engine.machine import InvocationMachine


def _input() -> pb.JournalEntry:
    return pb.JournalEntry(index=0, command=pb.JournalCommand(input=pb.InputCommand(value=b"1")))


def _machine(
    state: dict[str, bytes] | None, complete: bool = True, journal: tuple[pb.JournalEntry, ...] = ()
) -> InvocationMachine:
    start = pb.Start(invocation_id="inv_x", key="k", known_entries=1 + len(journal))
    if state is not None:
        entries = [pb.StateEntry(key=k, value=v) for k, v in state.items()]
        start.eager_state.CopyFrom(pb.EagerState(entries=entries, complete=complete))
    return InvocationMachine(start, [_input(), *journal])


def _get(name: str) -> pb.JournalCommand:
    return pb.JournalCommand(get_state=pb.GetStateCommand(key=name))


def _set(name: str, value: bytes) -> pb.JournalCommand:
    return pb.JournalCommand(set_state=pb.SetStateCommand(key=name, value=value))


KEYS = pb.JournalCommand(get_state_keys=pb.GetStateKeysCommand())
CLEAR_ALL = pb.JournalCommand(clear_all_state=pb.ClearAllStateCommand())


def test_reads_are_answered_locally_and_journaled_with_their_answer() -> None:
    machine = _machine({"count": b"4"})
    index = machine.sys_command(_get("count"))
    completed = machine.completion(index)
    assert completed is not None and completed.completion.value == b"4" and completed.seq == 0
    missing = machine.sys_command(_get("other"))  # complete state: a missing key is unset
    assert machine.completion(missing).completion.HasField("void")  # type: ignore[union-attr]
    [first, second] = machine.take_output()
    assert first.command.index == index and first.command.completion.value == b"4"
    assert second.command.completion.HasField("void")


def test_own_writes_are_seen_by_later_reads() -> None:
    machine = _machine({"a": b"1", "bb": b"2"})
    machine.sys_command(_set("ccc", b"3"))
    machine.sys_command(pb.JournalCommand(clear_state=pb.ClearStateCommand(key="a")))
    read = machine.sys_command(_get("ccc"))
    assert machine.completion(read).completion.value == b"3"  # type: ignore[union-attr]
    keys = machine.sys_command(KEYS)
    assert list(machine.completion(keys).completion.state_keys.keys) == ["bb", "ccc"]  # type: ignore[union-attr]
    machine.sys_command(CLEAR_ALL)
    empty = machine.sys_command(KEYS)
    assert list(machine.completion(empty).completion.state_keys.keys) == []  # type: ignore[union-attr]


def test_partial_state_answers_known_keys_and_reads_the_rest_lazily() -> None:
    machine = _machine({"a": b"1"}, complete=False)
    known = machine.sys_command(_get("a"))
    unknown = machine.sys_command(_get("b"))
    keys = machine.sys_command(KEYS)
    assert machine.completion(known) is not None
    assert machine.completion(unknown) is None and machine.completion(keys) is None
    output = machine.take_output()
    assert [m.command.HasField("completion") for m in output] == [True, False, False]
    machine.sys_command(CLEAR_ALL)  # after clear_all every key is known: unset
    after = machine.sys_command(_get("b"))
    assert machine.completion(after).completion.HasField("void")  # type: ignore[union-attr]


def test_without_eager_state_every_read_is_lazy() -> None:
    machine = _machine(None)
    index = machine.sys_command(_get("count"))
    assert machine.completion(index) is None
    [message] = machine.take_output()
    assert not message.command.HasField("completion")


def test_replay_keeps_the_journaled_value_and_does_not_send_again() -> None:
    # The journal read 4, then set 5; the state sent with Start is after the set (5).
    journal = (
        pb.JournalEntry(index=1, command=_get("count"), completion=pb.Completion(value=b"4")),
        pb.JournalEntry(index=2, command=_set("count", b"5")),
    )
    machine = _machine({"count": b"5"}, journal=journal)
    first = machine.sys_command(_get("count"))
    assert machine.completion(first).completion.value == b"4"  # type: ignore[union-attr]
    machine.sys_command(_set("count", b"5"))
    assert machine.take_output() == []
    live = machine.sys_command(_get("count"))
    assert machine.completion(live).completion.value == b"5"  # type: ignore[union-attr]
