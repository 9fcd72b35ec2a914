"""The endpoint's session: when the runtime closes its side of the stream (its way to ask for a
suspension), an attempt waiting for a completion suspends at once."""

from __future__ import annotations

import asyncio

import pytest

from proto import endpoint_pb2 as pb
from sdk._engine.machine import InvocationMachine
from sdk.errors import Suspended
from sdk.invocation import InvocationSession


def _session() -> InvocationSession:
    start = pb.Start(invocation_id="inv_x", known_entries=1)
    journal = [pb.JournalEntry(index=0, command=pb.JournalCommand(input=pb.InputCommand()))]
    return InvocationSession(InvocationMachine(start, journal), inactivity_timeout_s=3600)


async def test_a_waiting_attempt_suspends_when_the_runtime_closes_its_side() -> None:
    session = _session()
    index = session.command(pb.JournalCommand(sleep=pb.SleepCommand(wake_up_ms=10**13)))
    session.outgoing.get_nowait()  # the proposed sleep
    waiting = asyncio.create_task(session.wait_any([index]))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # an hour of inactivity timeout: it would wait
    session.on_runtime_gone()
    with pytest.raises(Suspended):
        await asyncio.wait_for(waiting, 5)
    message = session.outgoing.get_nowait()
    assert message is not None and list(message.suspension.awaiting_entries) == [index]


async def test_a_completion_already_received_is_used_before_suspending() -> None:
    session = _session()
    index = session.command(pb.JournalCommand(sleep=pb.SleepCommand(wake_up_ms=1)))
    session.on_runtime_message(
        pb.RuntimeMessage(
            notification=pb.Notification(
                index=index, completion=pb.Completion(void=pb.Empty()), completion_seq=1
            )
        )
    )
    session.on_runtime_gone()
    assert await session.wait_any([index]) == index
