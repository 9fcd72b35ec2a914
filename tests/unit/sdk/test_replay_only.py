"""The replay-only mode of an upgrade check: the handler replays its journal and stops where it
ends, running no step (no side effect) and proposing nothing."""

from __future__ import annotations

import sdk as restate
from proto import endpoint_pb2 as pb
from sdk._engine.machine import InvocationMachine
from sdk._transport.server import run_attempt
from sdk.definitions import handler_of
from sdk.invocation import InvocationSession
from tests.support.sdk_sessions import sent_messages


def _session(*steps: str, completed: int) -> InvocationSession:
    """A replay-only session whose journal holds the input and ``steps`` (the first
    ``completed`` of them with a result)."""
    journal = [pb.JournalEntry(index=0, command=pb.JournalCommand(input=pb.InputCommand()))]
    for index, name in enumerate(steps, start=1):
        entry = pb.JournalEntry(
            index=index, command=pb.JournalCommand(run=pb.RunCommand(name=name))
        )
        if index <= completed:
            entry.completion.CopyFrom(pb.Completion(value=b'"done"'))
            entry.completion_seq = index
        journal.append(entry)
    start = pb.Start(invocation_id="inv_test", known_entries=len(journal), replay_only=True)
    return InvocationSession(InvocationMachine(start, journal), 60.0)


svc = restate.Service("Steps")
ran: list[str] = []


@svc.handler()
async def steps(ctx: restate.Context) -> str:
    for name in ("one", "two", "three"):
        await ctx.run_typed(name, lambda name=name: ran.append(name) or name)  # type: ignore[func-returns-value]
    return "finished"


async def test_a_journal_that_replays_cleanly_ends_without_running_anything() -> None:
    ran.clear()
    # "two" is journaled but has no result yet: running it would be a side effect.
    session = _session("one", "two", completed=1)
    await run_attempt(session, handler_of(steps))
    assert ran == []
    assert [m.WhichOneof("kind") for m in sent_messages(session)] == ["end"]


async def test_a_mismatch_is_reported_with_its_entry() -> None:
    ran.clear()
    session = _session("one", "other", completed=2)
    await run_attempt(session, handler_of(steps))
    assert ran == []
    [error] = sent_messages(session)
    assert error.error.code == 570 and error.error.related_entry == 2
    assert "run('two')" in error.error.message and "run('other')" in error.error.message
