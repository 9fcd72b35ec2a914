"""The endpoint's side of an Attempts stream without gRPC: ``AttemptsStream`` fed RuntimeFrames
by the test, what it yields decoded as SdkFrames. Attempts are told apart by id, each one's
protocol error or abandon touches it alone, and frames of an attempt that ended are dropped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import sdk
from proto import endpoint_pb2 as pb
from sdk._transport.attempts import AttemptsStream
from sdk._transport.server import EndpointServicer

echo = sdk.Service("Echo")
cancelled: list[str] = []


@echo.handler()
async def wait(ctx: sdk.Context, name: str) -> str:
    try:
        value: str = await ctx.awakeable()[1]
    except asyncio.CancelledError:
        cancelled.append(name)
        raise
    return f"{name}:{value}"


def _open(attempt: int, name: str) -> pb.RuntimeFrame:
    start = pb.Start(
        invocation_id=f"inv_{attempt:048d}",
        service="Echo",
        handler="wait",
        known_entries=1,
        attempt=1,
        message_batches=True,
    )
    command = pb.JournalCommand(input=pb.InputCommand(value=json.dumps(name).encode()))
    entry = pb.JournalEntry(index=0, command=command)
    return pb.RuntimeFrame(
        attempt=attempt,
        messages=[pb.RuntimeMessage(start=start), pb.RuntimeMessage(replay_entry=entry)],
    )


def _resolve(attempt: int, value: str) -> pb.RuntimeFrame:
    notification = pb.Notification(
        index=1, completion=pb.Completion(value=json.dumps(value).encode()), completion_seq=1
    )
    return pb.RuntimeFrame(attempt=attempt, messages=[pb.RuntimeMessage(notification=notification)])


class Runtime:
    """Feeds frames in one at a time (a queue the stream reads) and collects what comes out."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[pb.RuntimeFrames | None] = asyncio.Queue()
        self.received: list[pb.SdkFrame] = []
        self.changed = asyncio.Event()

    async def requests(self) -> AsyncIterator[pb.RuntimeFrames]:
        while (frames := await self.frames.get()) is not None:
            yield frames

    def send(self, *frames: pb.RuntimeFrame) -> None:
        self.frames.put_nowait(pb.RuntimeFrames(frames=frames))

    async def collect(self, stream: AttemptsStream) -> None:
        async for data in stream.serve(self.requests()):
            self.received.extend(pb.SdkFrames.FromString(data).frames)
            self.changed.set()

    async def until(self, attempt: int, kind: str) -> pb.SdkMessage:
        async with asyncio.timeout(10):
            while True:
                for frame in self.received:
                    for message in frame.messages:
                        if frame.attempt == attempt and message.WhichOneof("kind") == kind:
                            return message
                self.changed.clear()
                await self.changed.wait()

    def ended(self, attempt: int) -> bool:
        return any(f.attempt == attempt and f.end for f in self.received)


async def test_attempts_are_demultiplexed_and_fail_alone() -> None:
    servicer = EndpointServicer(sdk.app([echo]))
    stream = AttemptsStream(servicer._launch, 1 << 20)
    runtime = Runtime()
    collecting = asyncio.create_task(runtime.collect(stream))
    try:
        # Three attempts opened in one message; the second's Start split from its journal.
        first, second = _open(1, "a"), _open(2, "b")
        second_start = pb.RuntimeFrame(attempt=2, messages=second.messages[:1])
        second_journal = pb.RuntimeFrame(attempt=2, messages=second.messages[1:])
        runtime.send(first, second_start, _open(3, "c"))
        runtime.send(second_journal)
        for attempt in (1, 2, 3):
            await runtime.until(attempt, "command")  # each one's awakeable, proposed
        # Answered out of order, each reaches its own handler.
        runtime.send(_resolve(3, "z"), _resolve(1, "x"))
        output = await runtime.until(3, "end")
        assert runtime.ended(3)
        outputs = [
            m.command.command.output.value
            for f in runtime.received
            if f.attempt in (1, 3)
            for m in f.messages
            if m.WhichOneof("kind") == "command" and m.command.command.HasField("output")
        ]
        assert output.WhichOneof("kind") == "end"
        await runtime.until(1, "end")
        assert sorted(json.loads(v) for v in outputs) == ["a:x", "c:z"]
        # Abandoned: its handler is cancelled, nothing comes back for it.
        runtime.send(pb.RuntimeFrame(attempt=2, abandon=True))
        for _ in range(1000):  # 10 s
            if cancelled == ["b"]:
                break
            await asyncio.sleep(0.01)
        assert cancelled == ["b"]
        # A batch inside a batch fails its attempt only (Error 571 and end).
        nested = pb.RuntimeMessage(
            batch=pb.RuntimeBatch(messages=[pb.RuntimeMessage(batch=pb.RuntimeBatch())])
        )
        runtime.send(pb.RuntimeFrame(attempt=4, messages=[nested]), _open(5, "e"))
        error = await runtime.until(4, "error")
        assert error.error.code == 571 and runtime.ended(4)
        await runtime.until(5, "command")
        # Late frames of attempts that ended are dropped (no attempt 3 starts again).
        before = len(runtime.received)
        runtime.send(_open(3, "again"), _resolve(5, "y"))
        await runtime.until(5, "end")
        assert not any(f.attempt == 3 for f in runtime.received[before:])
        # The runtime closes the stream, one attempt's journal incomplete (it cannot run now):
        # with no attempt left, the endpoint ends the stream too.
        incomplete = _open(6, "f")
        del incomplete.messages[1:]
        runtime.send(incomplete)
        runtime.frames.put_nowait(None)
        async with asyncio.timeout(10):
            await collecting
        assert not any(f.attempt == 2 for f in runtime.received if f.end)
        assert runtime.ended(6)
    finally:
        collecting.cancel()
        await asyncio.gather(collecting, return_exceptions=True)
