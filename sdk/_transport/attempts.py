"""The endpoint's side of an ``Attempts`` stream: many attempts on one gRPC stream
(proto/endpoint.proto, "Multiplexed attempts").

Each attempt is what an ``Invoke`` call runs (an ``InvocationSession`` and its ``run_attempt``
task, made by the server's ``launch``); only the transport differs. The runtime's frames are
taken apart per attempt (Start and the journal, then notifications, its close, its abandon), and
what the attempts send is written once per event-loop turn for all of them together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from proto import endpoint_pb2 as pb
from proto.frames import FLAG_3, FrameOutbox, fits
from sdk.invocation import InvocationSession, Outbox

# An Error's code for a message the runtime should not have sent (the runtime's PROTOCOL_ERROR)
# and for one of ours over the size limit (its TOO_LARGE).
PROTOCOL_ERROR_CODE = 571
TOO_LARGE_CODE = 413

Launched = tuple[InvocationSession, "asyncio.Task[None]"]
# Starts an attempt's handler: its session and task, or the Error that ends it at once.
Launch = Callable[[pb.Start, list[pb.JournalEntry], Outbox], Launched | pb.SdkMessage]


class _Attempt:
    __slots__ = ("id", "journal", "session", "start", "task")

    def __init__(self, attempt_id: int) -> None:
        self.id = attempt_id
        self.start: pb.Start | None = None
        self.journal: list[pb.JournalEntry] = []
        self.session: InvocationSession | None = None
        self.task: asyncio.Task[None] | None = None


class _AttemptOutbox:
    """A session's outbox: its messages go into its attempt's frame."""

    __slots__ = ("_attempt", "_stream")

    def __init__(self, stream: AttemptsStream, attempt_id: int) -> None:
        self._stream = stream
        self._attempt = attempt_id

    def put_nowait(self, message: pb.SdkMessage | None, /) -> None:
        if message is None:
            self._stream.end(self._attempt)
        else:
            self._stream.send(self._attempt, message)


class AttemptsStream:
    """One ``Attempts`` call: ``serve`` reads the runtime's frames and yields encoded SdkFrames."""

    def __init__(self, launch: Launch, max_message_bytes: int) -> None:
        self._launch = launch
        self._attempts: dict[int, _Attempt] = {}
        self._highest = 0  # the highest attempt id seen: lower unknown ones have ended here
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbox = FrameOutbox(max_message_bytes)
        self._wake = asyncio.Event()
        self._requests_done = False

    async def serve(self, requests: AsyncIterator[pb.RuntimeFrames]) -> AsyncIterator[bytes]:
        reader = asyncio.create_task(self._read(requests))
        outbox = self._outbox
        try:
            while True:
                if outbox:
                    self._end_closed()
                    for message in outbox.take():
                        yield message
                    continue
                if self._requests_done and not self._attempts:
                    # The runtime closed its side and every attempt has ended: so does the
                    # stream (a rotated stream closes this way).
                    return
                if reader.done() and not reader.cancelled() and reader.exception() is not None:
                    reader.result()
                self._wake.clear()
                await self._wake.wait()
        finally:
            reader.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(reader, *self._tasks, return_exceptions=True)

    # -- from the sessions

    def send(self, attempt_id: int, message: pb.SdkMessage) -> None:
        if attempt_id not in self._attempts:
            return  # ended or abandoned: nothing more goes out for it
        data = message.SerializeToString()
        if not fits(len(data), self._outbox.limit_bytes):
            # As gRPC refuses a message over its limit on an Invoke call (the runtime fails the
            # attempt as too large); only this attempt ends, the stream stays up.
            error = pb.Error(
                code=TOO_LARGE_CODE,
                message=f"a message of {len(data)} bytes exceeded the gRPC limit of "
                f"{self._outbox.limit_bytes} bytes",
                retryable=False,
            )
            self._fail(attempt_id, error)
            return
        self._outbox.add(attempt_id, data)
        self._wake.set()

    def end(self, attempt_id: int) -> None:
        """Nothing more comes for the attempt (SdkFrame.end)."""
        if self._attempts.pop(attempt_id, None) is not None:
            self._outbox.flag(attempt_id, FLAG_3)
            self._wake.set()

    def _end_closed(self) -> None:
        """End the attempts whose last word (End, Error, Suspension) is queued: it goes out
        with their end, in one frame."""
        for attempt_id in self._outbox.attempts():
            attempt = self._attempts.get(attempt_id)
            if attempt is not None and attempt.session is not None:
                if attempt.session.machine.closed:
                    self.end(attempt_id)

    def _fail(self, attempt_id: int, error: pb.Error) -> None:
        attempt = self._attempts.get(attempt_id)
        if attempt is None:
            return
        self._outbox.add(attempt_id, pb.SdkMessage(error=error).SerializeToString())
        self.end(attempt_id)
        if attempt.task is not None:
            attempt.task.cancel()

    # -- the runtime's frames

    async def _read(self, requests: AsyncIterator[pb.RuntimeFrames]) -> None:
        try:
            async for frames in requests:
                for frame in frames.frames:
                    self._on_frame(frame)
        finally:
            self._requests_done = True
            for attempt in list(self._attempts.values()):
                if attempt.session is not None:
                    attempt.session.on_runtime_gone()
                else:
                    self.end(attempt.id)  # its journal will not be complete now: it cannot run
            self._wake.set()

    def _on_frame(self, frame: pb.RuntimeFrame) -> None:
        attempt_id = frame.attempt
        attempt = self._attempts.get(attempt_id)
        if attempt is None:
            if attempt_id <= self._highest:
                return  # an attempt that ended here: what the runtime still said is dropped
            self._highest = attempt_id
            attempt = self._attempts[attempt_id] = _Attempt(attempt_id)
        for message in frame.messages:
            if message.WhichOneof("kind") == "batch":
                for inner in message.batch.messages:
                    if inner.WhichOneof("kind") == "batch":
                        self._protocol_error(attempt, "a batch must not hold another batch")
                    else:
                        self._take(attempt, inner)
            else:
                self._take(attempt, message)
            if attempt_id not in self._attempts:
                return
        if frame.abandon:
            del self._attempts[attempt_id]  # the runtime forgot it: nothing goes back
            if attempt.task is not None:
                attempt.task.cancel()
        elif frame.close:
            if attempt.session is not None:
                attempt.session.on_runtime_gone()
            else:
                self.end(attempt_id)  # closed before its journal was complete: it cannot run

    def _take(self, attempt: _Attempt, message: pb.RuntimeMessage) -> None:
        if attempt.id not in self._attempts:
            return
        if attempt.session is not None:
            attempt.session.on_runtime_message(message)
            return
        kind = message.WhichOneof("kind")
        if attempt.start is None:
            if kind != "start":
                self._protocol_error(attempt, "an attempt must begin with Start")
                return
            attempt.start = message.start
        elif kind == "replay_entry":
            attempt.journal.append(message.replay_entry)
        else:
            self._protocol_error(attempt, f"expected a replay entry, got {kind}")
            return
        if len(attempt.journal) == attempt.start.known_entries:
            self._start(attempt, attempt.start)

    def _start(self, attempt: _Attempt, start: pb.Start) -> None:
        journal, attempt.journal = attempt.journal, []
        launched = self._launch(start, journal, _AttemptOutbox(self, attempt.id))
        if isinstance(launched, pb.SdkMessage):
            self.send(attempt.id, launched)
            self.end(attempt.id)
            return
        attempt.session, attempt.task = launched
        self._tasks.add(attempt.task)
        attempt.task.add_done_callback(self._tasks.discard)
        attempt.task.add_done_callback(lambda _: self.end(attempt.id))

    def _protocol_error(self, attempt: _Attempt, reason: str) -> None:
        self._fail(attempt.id, pb.Error(code=PROTOCOL_ERROR_CODE, message=reason, retryable=True))
