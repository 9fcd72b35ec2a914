"""Batches on the wire, endpoint side: a real SDK endpoint (gRPC on 127.0.0.1) against a direct
gRPC client playing a runtime, new (batches) or old (single messages)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest

import sdk
from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from sdk._transport.server import start_server
from tests.support.teardown import bounded

counter = sdk.VirtualObject("Counter")


@counter.handler()
async def add(ctx: sdk.ObjectContext, delta: int) -> int:
    count: int = await ctx.get("count", type_hint=int) or 0
    ctx.set("count", count + delta)
    return count + delta


async def _endpoint(message_batches: bool) -> tuple[str, sdk.RunningEndpoint]:
    running = await start_server(sdk.app([counter]), port=0, message_batches=message_batches)
    return f"127.0.0.1:{running.port}", running


@pytest.fixture
async def batching() -> AsyncIterator[str]:
    target, running = await _endpoint(True)
    yield target
    await bounded("the batching endpoint's stop", lambda: running.stop(0))


@pytest.fixture
async def single() -> AsyncIterator[str]:
    target, running = await _endpoint(False)
    yield target
    await bounded("the endpoint's stop", lambda: running.stop(0))


def _start(flag: bool) -> pb.RuntimeMessage:
    start = pb.Start(
        invocation_id="inv_" + "2" * 48,
        service="Counter",
        handler="add",
        key="k",
        known_entries=1,
        attempt=1,
        eager_state=pb.EagerState(entries=[pb.StateEntry(key="count", value=b"4")], complete=True),
        message_batches=flag,
    )
    return pb.RuntimeMessage(start=start)


INPUT = pb.RuntimeMessage(
    replay_entry=pb.JournalEntry(
        index=0, command=pb.JournalCommand(input=pb.InputCommand(value=json.dumps(3).encode()))
    )
)


async def _attempt(target: str, messages: list[pb.RuntimeMessage]) -> list[pb.SdkMessage]:
    """Send ``messages`` (each one gRPC message); what the endpoint sends until its last word."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = endpoint_pb2_grpc.EndpointStub(channel).Invoke(timeout=10)
        for message in messages:
            await call.write(message)
        received: list[pb.SdkMessage] = []
        while True:
            message = await call.read()
            assert message is not grpc.aio.EOF
            received.append(message)
            last = message.batch.messages[-1] if message.HasField("batch") else message
            if last.WhichOneof("kind") in ("end", "error", "suspension"):
                call.cancel()
                return received


def _batch(*messages: pb.RuntimeMessage) -> pb.RuntimeMessage:
    return pb.RuntimeMessage(batch=pb.RuntimeBatch(messages=messages))


async def _manifest(target: str) -> pb.Manifest:
    async with grpc.aio.insecure_channel(target) as channel:
        manifest: pb.Manifest = await endpoint_pb2_grpc.EndpointStub(channel).Discover(
            pb.DiscoverRequest(), timeout=10
        )
        return manifest


async def test_a_new_runtime_gets_the_whole_attempt_in_one_message(batching: str) -> None:
    assert (await _manifest(batching)).message_batches
    [message] = await _attempt(batching, [_batch(_start(True), INPUT)])
    inner = list(message.batch.messages)
    assert [m.WhichOneof("kind") for m in inner] == ["command", "command", "command", "end"]
    assert inner[0].command.completion.value == b"4"  # the get, answered from eager state
    assert inner[1].command.command.set_state.value == b"7"
    assert inner[2].command.command.output.value == b"7"


async def test_an_old_runtime_gets_single_messages(batching: str) -> None:
    sent = await _attempt(batching, [_start(False), INPUT])
    assert [m.WhichOneof("kind") for m in sent] == ["command", "command", "command", "end"]


async def test_an_endpoint_without_batches_sends_single_messages(single: str) -> None:
    assert not (await _manifest(single)).message_batches
    sent = await _attempt(single, [_start(True), INPUT])
    assert [m.WhichOneof("kind") for m in sent] == ["command", "command", "command", "end"]


async def test_an_endpoint_without_batches_refuses_one(single: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _attempt(single, [_batch(_start(True), INPUT)])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_batch_inside_a_batch_is_refused(batching: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _attempt(batching, [_batch(_start(True), _batch(INPUT))])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch" in (refused.value.details() or "")
