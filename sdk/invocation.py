"""One attempt of one invocation inside the endpoint: the asyncio shell around the replay engine.

The transport feeds runtime messages in (``on_runtime_message``) and drains ``outgoing``; the
context turns handler actions into engine calls and waits here for completions. Waiting is where
the protocol's rules live: the lowest completion order wins among several completed futures (so a
``select`` decides the same way on replay), a pending cancellation is delivered at the first await
of a future not completed before it, and an attempt that waits longer than the inactivity timeout
with nothing running suspends, as does one waiting when the runtime has closed its side of the
stream (the runtime's way to ask for a suspension).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterable
from typing import Protocol

from proto import endpoint_pb2 as pb
from proto.batches import pack, sdk_batch
from sdk._engine.machine import InvocationMachine
from sdk.errors import AttemptClosed, Suspended, TerminalError

CANCELLED_CODE = 409

# The session of the handler running in this task, read only by ``sdk.logging`` to keep replayed
# log lines quiet (as restate-sdk does); nothing else may depend on it.
current_session: contextvars.ContextVar[InvocationSession | None] = contextvars.ContextVar(
    "cairn_current_session", default=None
)


# The largest gRPC message either way (a batch is split to stay under it): the runtime's size
# policy for a node with default settings (NodeConfig.size_policy().message_bytes; a test pins
# the two together). gRPC's own default (4 MiB) is below what the ingress accepts. Raise both
# together. The endpoint's server (sdk/_transport/server.py) serves with it unless told otherwise.
DEFAULT_MAX_MESSAGE_BYTES = 2 * 10 * 1024 * 1024 + 256 * 1024


class Outbox(Protocol):
    """Where a session's messages go: a queue its ``Invoke`` call drains, or the attempt's frame
    on a shared stream. None: the attempt has nothing more to say."""

    def put_nowait(self, message: pb.SdkMessage | None, /) -> None: ...


class InvocationSession:
    """``batches``: the runtime reads batched messages (``Start.message_batches``) and this
    endpoint may send them: what the handler emits is sent once per event-loop turn, and before
    the handler waits, as one message (split at ``max_message_bytes``). Without, each message is
    queued as it is emitted. ``framed``: sent at the same moments, but as the single messages of
    the attempt's frame on a shared stream (the frame is their batch)."""

    def __init__(
        self,
        machine: InvocationMachine,
        inactivity_timeout_s: float,
        *,
        batches: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        outgoing: Outbox | None = None,
        framed: bool = False,
    ) -> None:
        self.machine = machine
        # What an Invoke call drains (unused when ``outgoing`` is given).
        self.outgoing: asyncio.Queue[pb.SdkMessage | None] = asyncio.Queue()
        self._out: Outbox = self.outgoing if outgoing is None else outgoing
        self._batches = batches or framed
        self._pack = batches and not framed
        self._max_message_bytes = max_message_bytes
        self._send_scheduled = False
        # A step was started since the last send: the scheduled send waits one more turn, so
        # that a step finishing in its first turn sends its result with its RunCommand.
        self._step_just_started = False
        self._inactivity_timeout_s = inactivity_timeout_s
        self._changed = asyncio.Event()
        self._waiting: dict[object, frozenset[int]] = {}
        self._cancel_delivered = False
        self._steps_running = 0
        self._fatal: BaseException | None = None
        self._runtime_gone = False

    # ------------------------------------------------------------------ transport side

    def on_runtime_message(self, message: pb.RuntimeMessage) -> None:
        which = message.WhichOneof("kind")
        if which == "notification":
            self.machine.notify(message.notification)
        elif which == "cancel":
            self.machine.notify_cancel(message.cancel.cancel_seq)
        self._wake()

    def on_runtime_gone(self) -> None:
        self._runtime_gone = True
        self._wake()

    def flush(self) -> None:
        """The machine has emitted messages: send them now, or (batches) at the end of this
        event-loop turn, so that what the handler does until it yields travels together."""
        if not self._batches:
            for message in self.machine.take_output():
                self._out.put_nowait(message)
        elif self.machine.closed:
            self.send()  # End, Error or Suspension: nothing follows them
        else:
            self._send_soon()

    def _send_soon(self) -> None:
        if not self._send_scheduled:
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_send)

    def _scheduled_send(self) -> None:
        if not self._send_scheduled:
            return  # sent meanwhile
        if self._step_just_started:
            # The step's task runs its first turn before this one: once only, so that a step
            # that never runs cannot hold what the handler sent.
            self._step_just_started = False
            asyncio.get_running_loop().call_soon(self._scheduled_send)
            return
        self.send()

    def send(self) -> None:
        """Queue everything emitted so far, in order, as few messages as the size limit allows."""
        self._send_scheduled = False
        self._step_just_started = False
        output = self.machine.take_output()
        if self._pack and len(output) > 1:
            output = pack(output, self._max_message_bytes, sdk_batch)
        for message in output:
            self._out.put_nowait(message)

    # ------------------------------------------------------------------ context side

    def command(self, command: pb.JournalCommand) -> int:
        index = self.machine.sys_command(command)
        self.flush()
        return index

    def fail_attempt(self, error: BaseException) -> None:
        """A background step failed in a way that must fail the whole attempt."""
        if self._fatal is None:
            self._fatal = error
        self._wake()

    def step_started(self) -> None:
        self._steps_running += 1
        self._step_just_started = True

    def step_finished(self) -> None:
        self._steps_running -= 1
        self._wake()

    async def wait_any(self, indices: Iterable[int]) -> int:
        """Wait until one of ``indices`` is completed; returns the one completed first."""
        wanted = frozenset(indices)
        while True:
            self._check_alive()
            chosen = self._pick(wanted)
            if chosen is not None:
                return chosen
            if self._runtime_gone and self._steps_running == 0:
                # The runtime closed its side: it asks this attempt to suspend (its inactivity
                # timeout, or its running slots are all taken), and no completion can come now.
                self._suspend(set(wanted).union(*self._waiting.values()))
            await self._wait_for_change(wanted)

    async def wait_callee_id(self, index: int) -> str:
        """The invocation id of the call or send journaled at ``index``."""
        while (callee := self.machine.callee_id(index)) is None:
            self._check_alive()
            if self._runtime_gone:
                raise AttemptClosed()
            await self._wait_for_change(frozenset(), suspendable=False)
        return callee

    def _check_alive(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self.machine.closed:
            raise Suspended(sorted(set().union(*self._waiting.values())))

    def _pick(self, wanted: frozenset[int]) -> int | None:
        done = []
        for index in wanted:
            completed = self.machine.completion(index)
            if completed is not None:
                done.append((completed.seq, index))
        cancel_seq = self.machine.cancel_seq
        if cancel_seq and not self._cancel_delivered:
            before = [item for item in done if item[0] < cancel_seq]
            if before:
                return min(before)[1]
            self._cancel_delivered = True
            raise TerminalError("cancelled", CANCELLED_CODE)
        return min(done)[1] if done else None

    async def _wait_for_change(self, wanted: frozenset[int], suspendable: bool = True) -> None:
        # What the handler did before this wait goes out now (the runtime may need it to
        # answer), or, when it waits for a step just started, right after the step's first turn.
        if self._step_just_started and self._batches:
            self._send_soon()
        else:
            self.send()
        changed = self._changed
        token = object()
        self._waiting[token] = wanted
        # Only a wait that may end in a suspension has a deadline: a running step or a callee id
        # wakes the waiter when it changes, and a zero timeout must not make them spin.
        may_suspend = suspendable and self._steps_running == 0
        try:
            await asyncio.wait_for(
                changed.wait(), self._inactivity_timeout_s if may_suspend else None
            )
        except TimeoutError:
            if suspendable and self._steps_running == 0 and not self.machine.closed:
                self._suspend(set().union(*self._waiting.values()))
        finally:
            del self._waiting[token]

    def _suspend(self, awaiting: set[int]) -> None:
        indices = sorted(awaiting)
        self.machine.sys_suspend(indices)
        self.flush()
        raise Suspended(indices) from None

    def _wake(self) -> None:
        # Every waiter holds the event that was current when it started waiting; setting it and
        # installing a fresh one wakes all of them exactly once.
        self._changed.set()
        self._changed = asyncio.Event()
