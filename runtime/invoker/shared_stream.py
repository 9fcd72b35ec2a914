"""Many attempts on one gRPC stream to an endpoint (proto/endpoint.proto, "Multiplexed attempts").

Opening a gRPC call per attempt (its HEADERS, RST_STREAM, the call objects, the server's handler
task) was one of the largest parts of the node's CPU per request (issue 10). An endpoint whose
manifest declares ``multiplex`` gets one long-lived ``Attempts`` stream per node instead, and each
attempt is a ``SharedAttempt`` on it: the same four operations as an ``Invoke`` call (write, done
writing, read, cancel), so ``Attempt`` runs the same code on either.

The stream writes once per event-loop turn what every attempt queued in it (frames, encoded by
``proto.frames``), and its reader hands each attempt its frames. It failing fails every attempt on
it as a failed ``Invoke`` stream fails its one (retried); a message of one attempt over the size
limit fails that attempt only.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
from collections.abc import Iterable
from typing import Protocol

import grpc

from proto import endpoint_pb2 as pb
from proto.frames import FLAG_3, FLAG_4, FrameOutbox, fits

log = logging.getLogger(__name__)

ATTEMPTS_METHOD = "/cairn.endpoint.v1.Endpoint/Attempts"


class AttemptCall(Protocol):
    """What an attempt does with its stream: a ``grpc.aio.StreamStreamCall`` of ``Invoke``, or
    a ``SharedAttempt``. ``read`` returns an SdkMessage, ``grpc.aio.EOF`` when the endpoint ended
    the attempt, or raises ``grpc.aio.AioRpcError``."""

    async def write(self, message: pb.RuntimeMessage) -> None: ...

    async def done_writing(self) -> None: ...

    async def read(self) -> object: ...

    def cancel(self) -> bool: ...


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class SharedAttempt:
    """One attempt on a ``SharedStream``."""

    __slots__ = ("_ended", "_error", "_gone", "_inbox", "_stream", "_waiter", "id")

    def __init__(self, stream: SharedStream, attempt_id: int) -> None:
        self.id = attempt_id
        self._stream = stream
        self._inbox: collections.deque[object] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: grpc.aio.AioRpcError | None = None
        # The endpoint said it is done with the attempt (SdkFrame.end), or this side gave it up.
        self._ended = False
        self._gone = False

    async def write(self, message: pb.RuntimeMessage) -> None:
        if self._gone or self._error is not None:
            raise asyncio.InvalidStateError("the attempt's stream is closed")
        data = message.SerializeToString()
        stream = self._stream
        if not fits(len(data), stream.limit_bytes):
            # As gRPC refuses a message over its limit on an Invoke call; only this attempt
            # fails (the shared stream never carries it).
            self.fail(
                rpc_error(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"a runtime message of {len(data)} bytes is over the limit",
                )
            )
            self.cancel()
            raise self._error  # type: ignore[misc]
        stream.queue(self.id, data)
        # Bound what one attempt holds in the stream's outbox: past a full gRPC message, wait
        # for the stream to write it (a journal is written in limit-sized pieces).
        while stream.queued_bytes(self.id) > stream.limit_bytes:
            if self._gone or self._error is not None:
                return  # (the stream failed: read says so)
            await stream.written()

    async def done_writing(self) -> None:
        if not self._gone:
            self._stream.flag(self.id, FLAG_3)

    async def read(self) -> object:
        while not self._inbox:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._inbox.popleft()

    def cancel(self) -> bool:
        """Give the attempt up (the endpoint cancels it), unless it ended already."""
        if self._gone:
            return False
        self._gone = True
        self._stream.release(self.id, abandon=not self._ended)
        return True

    # -- from the stream

    def deliver(self, messages: Iterable[pb.SdkMessage], end: bool) -> None:
        self._inbox.extend(messages)
        if end:
            self._ended = True
            self._inbox.append(grpc.aio.EOF)
        self._wake()

    def fail(self, error: grpc.aio.AioRpcError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class SharedStream:
    """One ``Attempts`` call and the attempts on it; ``task`` runs it (its owner awaits it)."""

    def __init__(
        self,
        method: grpc.aio.StreamStreamMultiCallable,
        metadata: tuple[tuple[str, str], ...],
        limit_bytes: int,
        uri: str,
    ) -> None:
        self.limit_bytes = limit_bytes
        self.uri = uri
        self._call = method(metadata=metadata)
        self.opened = asyncio.get_running_loop().time()
        self._attempts: dict[int, SharedAttempt] = {}
        self._next_id = 1
        self._outbox = FrameOutbox(limit_bytes)
        self._wake = asyncio.Event()
        self._written = asyncio.Event()
        # No new attempts (rotated, or failed): it closes once its attempts have ended.
        self.draining = False
        self.failed = False
        # (In a context of its own: not the log context of the attempt that happened to open it.)
        self.task = asyncio.get_running_loop().create_task(
            self._run(), context=contextvars.Context()
        )

    @property
    def usable(self) -> bool:
        return not self.draining and not self.failed

    def attempt(self) -> SharedAttempt:
        attempt = SharedAttempt(self, self._next_id)
        self._next_id += 1
        self._attempts[attempt.id] = attempt
        # Its first frame goes out before any of a later attempt's, whatever they write first.
        self._outbox.open(attempt.id)
        return attempt

    def drain(self) -> None:
        self.draining = True
        self._wake.set()

    # -- from attempts

    def queue(self, attempt_id: int, data: bytes) -> None:
        self._outbox.add(attempt_id, data)
        self._wake.set()

    def flag(self, attempt_id: int, flag: bytes) -> None:
        self._outbox.flag(attempt_id, flag)
        self._wake.set()

    def queued_bytes(self, attempt_id: int) -> int:
        return self._outbox.queued_bytes(attempt_id)

    async def written(self) -> None:
        await self._written.wait()

    def release(self, attempt_id: int, *, abandon: bool) -> None:
        if self._attempts.pop(attempt_id, None) is not None and abandon and not self.failed:
            self.flag(attempt_id, FLAG_4)
        elif self.draining:
            self._wake.set()

    # -- the stream

    async def _run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        error: grpc.aio.AioRpcError | None = None
        try:
            # The endpoint answers with its initial metadata once it accepted the stream's
            # token; nothing is written before (a refusal then reads as UNAUTHENTICATED, not as
            # the INTERNAL of a call ended while its client writes: grpc/grpc#36066).
            await self._call.initial_metadata()
            if self._call.done():
                code = await self._call.code()
                raise rpc_error(
                    code if code != grpc.StatusCode.OK else grpc.StatusCode.UNAVAILABLE,
                    await self._call.details() or "the endpoint ended the stream",
                )
            reader = asyncio.create_task(self._read())
            writer = asyncio.create_task(self._write())
            tasks = [reader, writer]
            # Either failing ends the stream (below), and so does the reader meeting its end;
            # the writer ends by itself only once it half-closed a drained stream, whose end
            # the reader then meets.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            if not reader.done():
                await reader
        except grpc.aio.AioRpcError as exc:
            error = exc
        except asyncio.CancelledError:
            error = rpc_error(grpc.StatusCode.UNAVAILABLE, "the node closed the stream")
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure of the transport
            error = rpc_error(grpc.StatusCode.UNAVAILABLE, f"the attempts stream failed: {exc!r}")
        finally:
            self.failed = True
            self._call.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._attempts:
                if error is None:
                    error = rpc_error(grpc.StatusCode.UNAVAILABLE, "the endpoint ended the stream")
                elif error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    # Sizes are checked per attempt before writing: the stream's own limit
                    # says nothing about one attempt, so none of them fails for good.
                    error = rpc_error(grpc.StatusCode.UNAVAILABLE, error.details() or "")
                log.warning(
                    "attempts stream to %s failed (%d attempts on it): %s: %s",
                    self.uri,
                    len(self._attempts),
                    error.code().name,
                    error.details(),
                )
                attempts, self._attempts = self._attempts, {}
                for attempt in attempts.values():
                    attempt.fail(error)
            self._written.set()

    async def _write(self) -> None:
        call = self._call
        outbox = self._outbox
        while True:
            if not outbox:
                if self.draining and not self._attempts:
                    await call.done_writing()  # the endpoint ends the stream: _read sees EOF
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            for message in outbox.take():
                await call.write(message)
            self._written.set()
            self._written = asyncio.Event()

    async def _read(self) -> None:
        call = self._call
        attempts = self._attempts
        while True:
            frames = await call.read()
            if frames is grpc.aio.EOF:
                return
            for frame in frames.frames:
                attempt = attempts.get(frame.attempt)
                if attempt is None:
                    continue  # one this side gave up: what the endpoint still said is dropped
                attempt.deliver(frame.messages, frame.end)
                if frame.end:
                    del attempts[frame.attempt]
            if self.draining and not attempts:
                self._wake.set()
