"""Many attempts on one ``Attempts`` stream: the runtime's transport (ChannelPool, SharedStream,
SharedAttempt) against a real SDK endpoint on 127.0.0.1, the test playing the rest of the
runtime (it writes Start, the journal and notifications, and reads what the SDK sends)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import sdk
from proto import endpoint_pb2 as pb
from runtime.invoker.channels import ChannelPool
from runtime.invoker.shared_stream import SharedAttempt
from runtime.security.endpoints import EndpointSecurity
from runtime.security.identity import RequestSigner, public_key_id
from sdk._transport.server import start_server
from tests.support.teardown import bounded

LIMIT = 64 * 1024
DEPLOYMENT = "dp_test"
steps = sdk.Service("Steps")
# Attempts of Steps/hold whose handler task was cancelled (the runtime abandoned them).
cancelled: list[int] = []


@steps.handler()
async def double(ctx: sdk.Context, n: int) -> int:
    doubled: int = await ctx.run("double", lambda: n * 2)
    return doubled + 1


@steps.handler()
async def hold(ctx: sdk.Context, n: int) -> int:
    try:
        await ctx.sleep(timedelta(hours=1))
    except asyncio.CancelledError:
        cancelled.append(n)
        raise
    return n


@steps.handler()
async def many(ctx: sdk.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += len(await ctx.run(f"step-{i}", lambda: "z" * 1000))
    return total


@steps.handler()
async def huge(ctx: sdk.Context, n: int) -> str:
    return "x" * (LIMIT * 2)


def _start(number: int, handler: str) -> pb.RuntimeMessage:
    return pb.RuntimeMessage(
        start=pb.Start(
            invocation_id=f"inv_{number:048d}",
            service="Steps",
            handler=handler,
            known_entries=1,
            attempt=1,
            message_batches=True,
        )
    )


def _input(value: object) -> pb.RuntimeMessage:
    command = pb.JournalCommand(input=pb.InputCommand(value=json.dumps(value).encode()))
    return pb.RuntimeMessage(replay_entry=pb.JournalEntry(index=0, command=command))


async def _open(pool: ChannelPool, uri: str, number: int, handler: str) -> SharedAttempt:
    attempt = pool.shared(uri, DEPLOYMENT).attempt()
    await attempt.write(_start(number, handler))
    await attempt.write(_input(number))
    return attempt


async def _read_until(attempt: SharedAttempt, *kinds: str) -> list[pb.SdkMessage]:
    received: list[pb.SdkMessage] = []
    async with asyncio.timeout(10):
        while True:
            message = await attempt.read()
            assert isinstance(message, pb.SdkMessage), message
            received.append(message)
            if message.WhichOneof("kind") in kinds:
                return received


def _output(messages: list[pb.SdkMessage]) -> object:
    for message in messages:
        if message.WhichOneof("kind") == "command" and message.command.command.HasField("output"):
            return json.loads(message.command.command.output.value)
    raise AssertionError(f"no output in {messages}")


async def _eventually(check: Callable[[], bool]) -> None:
    for _ in range(1000):  # 10 s
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 10 s")


def _pool(security: EndpointSecurity | None = None, rotate_after_s: float = 60.0) -> ChannelPool:
    return ChannelPool(
        LIMIT,
        keepalive_time_ms=20_000,
        keepalive_timeout_ms=10_000,
        security=security,
        rotate_after_s=rotate_after_s,
    )


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    running = await start_server(sdk.app([steps]), port=0, max_message_bytes=LIMIT)
    yield f"grpc://127.0.0.1:{running.port}"
    await bounded("the endpoint's stop", lambda: running.stop(0))


@pytest.fixture
async def pool() -> AsyncIterator[ChannelPool]:
    channels = _pool()
    yield channels
    await bounded("the channel pool's close", channels.close)


async def test_many_attempts_interleave_on_one_stream(endpoint: str, pool: ChannelPool) -> None:
    attempts = [await _open(pool, endpoint, n, "double") for n in range(20)]
    stream = pool.shared(endpoint, DEPLOYMENT)
    assert [a.id for a in attempts] == list(range(1, 21))  # one stream, ids in order
    # Every attempt proposes its step's result and waits for it to be journaled.
    for n, attempt in enumerate(attempts):
        proposed = await _read_until(attempt, "run_completion")
        assert json.loads(proposed[-1].run_completion.value) == n * 2
    # Answered in reverse order, each in its own turn: the SDK tells them apart by id alone.
    for n, attempt in reversed(list(enumerate(attempts))):
        completion = pb.Completion(value=json.dumps(n * 2).encode())
        notification = pb.Notification(index=1, completion=completion, completion_seq=1)
        await attempt.write(pb.RuntimeMessage(notification=notification))
    outputs = [_output(await _read_until(a, "end")) for a in attempts]
    assert outputs == [n * 2 + 1 for n in range(20)]
    for attempt in attempts:
        assert await attempt.read() is grpc.aio.EOF  # the SDK ended each (SdkFrame.end)
        attempt.cancel()  # nothing to abandon: no frame goes out for it
    assert pool.shared(endpoint, DEPLOYMENT) is stream and stream.usable


async def test_one_attempt_abandoned_or_failing_leaves_the_others(
    endpoint: str, pool: ChannelPool
) -> None:
    held = [await _open(pool, endpoint, 100 + n, "hold") for n in range(3)]
    for attempt in held:
        await _read_until(attempt, "command")  # the sleep, proposed
    held[1].cancel()  # abandoned: the endpoint cancels that handler only
    await _eventually(lambda: cancelled == [101])
    # Runtime side: a message over the limit fails its attempt only (TOO_LARGE, as on Invoke).
    big = pb.Notification(index=1, completion=pb.Completion(value=b"y" * LIMIT))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await held[2].write(pb.RuntimeMessage(notification=big))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.aio.AioRpcError):
        await held[2].read()
    await _eventually(lambda: cancelled == [101, 102])  # given up: abandoned, so cancelled
    # SDK side: an output over the limit becomes an Error 413 for its attempt only.
    too_large = await _open(pool, endpoint, 200, "huge")
    [error] = await _read_until(too_large, "error")
    assert (error.error.code, error.error.retryable) == (413, False)
    # A protocol error (an attempt not opened by Start) fails that attempt only.
    stray = pool.shared(endpoint, DEPLOYMENT).attempt()
    await stray.write(_input(1))
    [violation] = await _read_until(stray, "error")
    assert violation.error.code == 571 and "Start" in violation.error.message
    # The first held attempt still runs: its sleep completes and it ends.
    fired = pb.Notification(index=1, completion_seq=1)
    fired.completion.void.SetInParent()
    await held[0].write(pb.RuntimeMessage(notification=fired))
    assert _output(await _read_until(held[0], "end")) == 100
    assert cancelled == [101, 102]
    # And new attempts still go to the same stream.
    fresh = await _open(pool, endpoint, 7, "double")
    assert fresh.id == 6
    await _read_until(fresh, "run_completion")


async def test_closing_an_attempts_side_asks_it_to_suspend(
    endpoint: str, pool: ChannelPool
) -> None:
    attempt = await _open(pool, endpoint, 300, "hold")
    await _read_until(attempt, "command")
    await attempt.done_writing()
    [suspension] = await _read_until(attempt, "suspension")
    assert list(suspension.suspension.awaiting_entries) == [1]
    assert await attempt.read() is grpc.aio.EOF


async def test_the_stream_failing_fails_every_attempt_on_it_and_a_new_one_opens() -> None:
    running = await start_server(sdk.app([steps]), port=0, max_message_bytes=LIMIT)
    uri = f"grpc://127.0.0.1:{running.port}"
    pool = _pool()
    try:
        attempts = [await _open(pool, uri, 400 + n, "hold") for n in range(3)]
        for attempt in attempts:
            await _read_until(attempt, "command")
        first = pool.shared(uri, DEPLOYMENT)
        await running.stop(0)
        for attempt in attempts:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                async with asyncio.timeout(10):
                    await attempt.read()
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        running = await start_server(sdk.app([steps]), port=running.port, max_message_bytes=LIMIT)
        again = await _open(pool, uri, 410, "double")
        assert pool.shared(uri, DEPLOYMENT) is not first
        await _read_until(again, "run_completion")
    finally:
        await pool.close()
        await running.stop(0)


async def test_an_endpoint_without_multiplexing_refuses_the_stream() -> None:
    running = await start_server(sdk.app([steps]), port=0, multiplex=False)
    pool = _pool()
    try:
        attempt = await _open(pool, f"grpc://127.0.0.1:{running.port}", 1, "double")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async with asyncio.timeout(10):
                await attempt.read()
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await pool.close()
        await running.stop(0)


async def test_an_unsigned_or_misdirected_stream_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    running = await start_server(
        sdk.app([steps]), port=0, identity_keys=[public_key_id(key)], max_message_bytes=LIMIT
    )
    uri = f"grpc://127.0.0.1:{running.port}"
    signer = RequestSigner(key)

    class InvokeTokens(EndpointSecurity):
        """Signs the stream as if it were one invocation's Invoke call."""

        def attempts_metadata(self, deployment_id: str) -> tuple[tuple[str, str], ...]:
            return signer.metadata(f"inv_{1:048d}", deployment_id)

    try:
        for security in (None, InvokeTokens(signer=signer)):
            pool = _pool(security)
            try:
                attempt = await _open(pool, uri, 1, "double")
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    async with asyncio.timeout(10):
                        await attempt.read()
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            finally:
                await pool.close()
        pool = _pool(EndpointSecurity(signer=signer))
        try:
            attempt = await _open(pool, uri, 1, "double")
            await _read_until(attempt, "run_completion")  # signed for "attempts": served
        finally:
            await pool.close()
    finally:
        await running.stop(0)


async def test_a_stream_is_rotated_and_closes_when_its_attempts_end(endpoint: str) -> None:
    pool = _pool(rotate_after_s=0.2)
    try:
        old_attempt = await _open(pool, endpoint, 500, "double")
        old = pool.shared(endpoint, DEPLOYMENT)
        await _read_until(old_attempt, "run_completion")
        await asyncio.sleep(0.3)
        new_attempt = await _open(pool, endpoint, 501, "double")
        new = pool.shared(endpoint, DEPLOYMENT)
        assert new is not old and new_attempt.id == 1 and old.draining
        await _read_until(new_attempt, "run_completion")
        assert not old.task.done()  # its attempt still runs on it
        completion = pb.Completion(value=json.dumps(1000).encode())
        notification = pb.Notification(index=1, completion=completion, completion_seq=1)
        await old_attempt.write(pb.RuntimeMessage(notification=notification))
        assert _output(await _read_until(old_attempt, "end")) == 1001
        old_attempt.cancel()
        async with asyncio.timeout(10):
            await old.task  # closed (half-closed, then ended by the endpoint), not failed
        assert new.usable and not new.task.done()
    finally:
        await pool.close()


async def test_a_journal_larger_than_a_message_is_written_in_pieces(
    endpoint: str, pool: ChannelPool
) -> None:
    steps_done = 3 * LIMIT // 1000  # three gRPC messages' worth of journal
    attempt = pool.shared(endpoint, DEPLOYMENT).attempt()
    start = _start(600, "many")
    start.start.known_entries = 1 + steps_done
    await attempt.write(start)
    await attempt.write(_input(steps_done))
    for index in range(1, steps_done + 1):
        entry = pb.JournalEntry(
            index=index,
            command=pb.JournalCommand(run=pb.RunCommand(name=f"step-{index - 1}")),
            completion=pb.Completion(value=json.dumps("z" * 1000).encode()),
            completion_seq=index,
        )
        await attempt.write(pb.RuntimeMessage(replay_entry=entry))
    assert _output(await _read_until(attempt, "end")) == 1000 * steps_done  # all replayed


async def test_an_endpoint_ending_the_stream_early_fails_its_attempts() -> None:
    """A misbehaving endpoint (a bare gRPC server, not the SDK) that accepts the stream, reads one
    message and ends it: the attempt on it fails at once, as an Invoke call ended early does."""

    async def attempts(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        await context.send_initial_metadata(())
        async for _ in requests:
            return  # (ends the call: OK, with nothing sent)
        yield b""  # (never: makes this a response stream)

    handler = grpc.stream_stream_rpc_method_handler(attempts)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("cairn.endpoint.v1.Endpoint", {"Attempts": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    pool = _pool()
    try:
        attempt = await _open(pool, f"grpc://127.0.0.1:{port}", 1, "double")
        stream = pool.shared(f"grpc://127.0.0.1:{port}", DEPLOYMENT)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async with asyncio.timeout(10):
                await attempt.read()
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        async with asyncio.timeout(10):
            await stream.task  # over, its writer too
        assert stream.failed
    finally:
        await pool.close()
        await server.stop(0)
