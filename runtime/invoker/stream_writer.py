"""How an attempt writes to its stream (a mixin of ``Attempt``, which sets these attributes).

Start, the journal and the notifications queued with them are written by the reader task before
it reads (``_open``); a writer task is started only when something is queued after them (a
notification, a cancellation, a suspension request), so an attempt that needs none (a counter's
or a greeter's, to an endpoint that batches) runs without one. To an endpoint that reads batches,
what is queued when a write starts goes in one message (proto/endpoint.proto, "Batches").
"""

from __future__ import annotations

import asyncio

import grpc

from proto import endpoint_pb2 as pb
from proto.batches import pack, runtime_batch
from runtime.invoker.shared_stream import AttemptCall
from runtime.limits import SizePolicy


class AttemptWriter:
    """The stream-writing methods of ``Attempt``."""

    _outgoing: asyncio.Queue[pb.RuntimeMessage | None]
    _call: AttemptCall | None
    _writer: asyncio.Task[None] | None
    _batches: bool
    _limits: SizePolicy

    def _active(self) -> None:
        raise NotImplementedError  # (Attempt's)

    def _send(self, message: pb.RuntimeMessage | None) -> None:
        """Queue ``message`` for the endpoint (None: close the sending side)."""
        self._outgoing.put_nowait(message)
        if self._call is not None and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write(self._call))

    async def _open(self, call: AttemptCall) -> None:
        """Write Start and what was queued with it (one message to an endpoint that reads
        batches), then leave what follows to a writer task (_send starts it)."""
        try:
            first = self._outgoing.get_nowait()  # (Start: _run queued it)
            if first is None or not await self._write_some(call, first):
                await call.done_writing()  # asked to suspend already
                return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the stream failed: the read that follows says why
        self._call = call
        if not self._outgoing.empty():
            self._writer = asyncio.get_running_loop().create_task(self._write(call))

    async def _write(self, call: AttemptCall) -> None:
        while (message := await self._outgoing.get()) is not None:
            if not await self._write_some(call, message):
                break
        await call.done_writing()  # asked to suspend (see request_suspension)

    async def _write_some(self, call: AttemptCall, message: pb.RuntimeMessage) -> bool:
        """Write ``message``; to an endpoint that reads batches, with everything queued after it
        in one message (notifications applied together), split at the size policy's limit.
        False when the sending side is to be closed (nothing after that is sent)."""
        outgoing = self._outgoing
        if not self._batches or outgoing.empty():
            await call.write(message)
            self._active()
            return True
        messages = [message]
        closing = False
        while not outgoing.empty():
            queued = outgoing.get_nowait()
            if queued is None:
                closing = True
                break
            messages.append(queued)
        for packed in pack(messages, self._limits.message_bytes, runtime_batch):
            await call.write(packed)
        self._active()
        return not closing
