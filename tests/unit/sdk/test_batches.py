"""The endpoint's flush rule with batches (proto/endpoint.proto, "Batches"): what a handler emits
until it blocks leaves in one message, before every wait, in order, split at the size limit;
without ``Start.message_batches`` every message leaves alone, as before batches."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sdk as restate
from proto import endpoint_pb2 as pb
from sdk._engine.machine import InvocationMachine
from sdk._transport.server import run_attempt
from sdk.definitions import handler_of
from sdk.invocation import InvocationSession
from tests.support.sdk_sessions import sent_messages

counter = restate.VirtualObject("Counter")
steps_service = restate.Service("Steps")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    count: int = await ctx.get("count", type_hint=int) or 0
    ctx.set("count", count + delta)
    return count + delta


@counter.handler()
async def nap_then_set(ctx: restate.ObjectContext) -> str:
    ctx.set("before", 1)
    await ctx.sleep(timedelta(hours=1))
    ctx.set("after", 2)
    return "rested"


@counter.handler()
async def many(ctx: restate.ObjectContext, size: int) -> int:
    for name in "abcde":
        ctx.set(name, "x" * size)
    return size


@steps_service.handler()
async def three(ctx: restate.Context) -> int:
    total = 0
    for name in ("one", "two", "three"):
        total += await ctx.run_typed(name, lambda: 1)
    return total


def _session(
    service: str,
    handler: str,
    argument: bytes = b"",
    *,
    flag: bool = True,
    batches: bool = True,
    max_message_bytes: int = 1 << 20,
) -> InvocationSession:
    start = pb.Start(
        invocation_id="inv_batches",
        service=service,
        handler=handler,
        key="k" if service == "Counter" else "",
        known_entries=1,
        eager_state=pb.EagerState(complete=True) if service == "Counter" else None,
        message_batches=flag,
    )
    entry = pb.JournalEntry(
        index=0, command=pb.JournalCommand(input=pb.InputCommand(value=argument))
    )
    return InvocationSession(
        InvocationMachine(start, [entry]),
        3600.0,
        batches=batches and flag,
        max_message_bytes=max_message_bytes,
    )


def _kinds(message: pb.SdkMessage) -> list[str]:
    """The kinds of a message's contents: a batch's messages, or the one message."""
    if message.WhichOneof("kind") == "batch":
        return [describe(inner) for inner in message.batch.messages]
    return [describe(message)]


def describe(message: pb.SdkMessage) -> str:
    kind = message.WhichOneof("kind")
    assert kind is not None
    if kind == "command":
        return str(message.command.command.WhichOneof("kind"))
    return kind


async def test_a_counter_attempt_sends_one_message() -> None:
    session = _session("Counter", "add", b"5")
    await run_attempt(session, handler_of(add))
    [message] = sent_messages(session)
    assert message.WhichOneof("kind") == "batch"
    assert _kinds(message) == ["get_state", "set_state", "output", "end"]
    assert [m.command.index for m in message.batch.messages[:3]] == [1, 2, 3]
    await asyncio.sleep(0)  # (the send scheduled by the first command finds nothing left)
    assert sent_messages(session) == []


async def test_a_single_message_is_sent_as_itself() -> None:
    session = _session("Counter", "add", b"5")
    session.command(pb.JournalCommand(clear_state=pb.ClearStateCommand(key="x")))
    await asyncio.sleep(0)  # the end of the turn
    [message] = sent_messages(session)
    assert message.WhichOneof("kind") == "command"


async def test_what_the_handler_did_goes_out_before_it_waits() -> None:
    session = _session("Counter", "nap_then_set")
    attempt = asyncio.create_task(run_attempt(session, handler_of(nap_then_set)))
    await asyncio.sleep(0.05)
    assert not attempt.done()  # waiting for the timer
    [first] = sent_messages(session)
    assert _kinds(first) == ["set_state", "sleep"]
    session.on_runtime_message(
        pb.RuntimeMessage(
            notification=pb.Notification(
                index=2, completion=pb.Completion(void=pb.Empty()), completion_seq=1
            )
        )
    )
    await asyncio.wait_for(attempt, 5)
    [last] = sent_messages(session)
    assert _kinds(last) == ["set_state", "output", "end"]


async def test_a_step_sends_its_command_and_result_together_then_waits() -> None:
    session = _session("Steps", "three")
    attempt = asyncio.create_task(run_attempt(session, handler_of(three)))
    for index in (1, 2, 3):
        message = await asyncio.wait_for(session.outgoing.get(), 5)
        assert message is not None
        assert _kinds(message) == ["run", "run_completion"]
        assert [
            message.batch.messages[0].command.index,
            message.batch.messages[1].run_completion.index,
        ] == [index, index]
        await asyncio.sleep(0.02)
        assert session.outgoing.empty()  # it waits for the result to be in the log
        completion = pb.Completion(value=b"1")
        session.on_runtime_message(
            pb.RuntimeMessage(
                notification=pb.Notification(
                    index=index, completion=completion, completion_seq=index
                )
            )
        )
    await asyncio.wait_for(attempt, 5)
    [last] = sent_messages(session)
    assert _kinds(last) == ["output", "end"]
    assert last.batch.messages[0].command.command.output.value == b"3"


async def test_a_batch_over_the_size_limit_is_split_in_order() -> None:
    limit = 2500
    session = _session("Counter", "many", b"1000", max_message_bytes=limit)
    await run_attempt(session, handler_of(many))
    sent = sent_messages(session)
    assert len(sent) > 1
    assert all(message.ByteSize() <= limit for message in sent)
    flat = [kind for message in sent for kind in _kinds(message)]
    assert flat == ["set_state"] * 5 + ["output", "end"]
    names = [
        inner.command.command.set_state.key
        for message in sent
        for inner in (message.batch.messages if message.HasField("batch") else [message])
        if inner.HasField("command") and inner.command.command.HasField("set_state")
    ]
    assert names == list("abcde")


async def test_without_the_start_flag_every_message_goes_alone() -> None:
    # An older runtime: Start without message_batches.
    session = _session("Counter", "add", b"5", flag=False)
    await run_attempt(session, handler_of(add))
    sent = sent_messages(session)
    assert [message.WhichOneof("kind") for message in sent] == [
        "command",
        "command",
        "command",
        "end",
    ]


async def test_an_endpoint_without_batches_ignores_the_start_flag() -> None:
    session = _session("Counter", "add", b"5", batches=False)
    await run_attempt(session, handler_of(add))
    assert [describe(message) for message in sent_messages(session)] == [
        "get_state",
        "set_state",
        "output",
        "end",
    ]
