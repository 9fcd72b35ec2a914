"""One invocation attempt: a bidirectional stream to the SDK endpoint (DESIGN §6).

Everything the SDK reports is turned into an ``InvokerEffect`` record and appended to the log;
nothing here changes state directly. Effects are proposed in the order the SDK sent them, batched
when several are waiting.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import msgspec

from partition_processor import codes
from partition_processor.commands import (
    Effect,
    End,
    Failed,
    InvokerEffect,
    JournalAppend,
    Pinned,
    Suspended,
    Target,
)
from partition_processor.ids import random_seed_of
from partition_processor.journal import (
    ClearAllState,
    ClearState,
    Completion,
    Output,
    Run,
    SetState,
)
from partition_processor.tables import KeyValueReader, read_journal, read_state, read_status
from partition_processor.values import InvocationStatus
from proto import endpoint_pb2 as pb
from runtime.faults import fault_point
from runtime.invoker import codec
from runtime.invoker.channels import ChannelPool
from runtime.invoker.sdk_messages import AttemptMessages
from runtime.invoker.shared_stream import AttemptCall
from runtime.invoker.slots import RunningSlots
from runtime.invoker.stream_writer import AttemptWriter
from runtime.invoker.validation import InvalidCommand
from runtime.invoker.watchdog import StreamWatchdog
from runtime.limits import SizePolicy
from runtime.log import LogError
from runtime.logs import bind_invocation
from runtime.metadata import Deployment, HandlerInfo, Registry
from runtime.metrics import (
    ATTEMPT_OUTCOMES,
    ATTEMPTS_ABORTED,
    INVOKER_APPENDS,
    INVOKER_EFFECTS,
    JOURNAL_ENTRIES,
    STREAM_DURATION,
)
from runtime.worker.proposer import LeaderProposer

log = logging.getLogger(__name__)

UNAVAILABLE_CODE = codes.UNAVAILABLE
PROTOCOL_ERROR_CODE = codes.PROTOCOL_ERROR


class StreamTimeouts(msgspec.Struct, frozen=True):
    """The node's defaults for an attempt's stream (a handler's manifest overrides them)."""

    inactivity_ms: int
    abort_ms: int
    # How long effects nobody waits for may wait for one that somebody does (0: not at all).
    coalesce_ms: int = 0

    def for_handler(self, handler: HandlerInfo | None) -> tuple[float, float]:
        """(inactivity, abort) in seconds for ``handler``."""
        inactivity = self.inactivity_ms
        abort = self.abort_ms
        if handler is not None and handler.inactivity_timeout_ms is not None:
            inactivity = handler.inactivity_timeout_ms
        if handler is not None and handler.abort_timeout_ms is not None:
            abort = handler.abort_timeout_ms
        return inactivity / 1000, abort / 1000


def _silent(effect: Effect) -> bool:
    """An effect no one waits for: the SDK goes on without an answer, and nothing outside the
    invocation acts on it before the invocation's next awaited effect or its end."""
    if not isinstance(effect, JournalAppend):
        return False
    if effect.completion is not None:
        return True  # a state read the SDK answered itself
    return isinstance(effect.command, _SILENT_COMMANDS)


# (A tuple built once: a union in isinstance is built again at every call.)
_SILENT_COMMANDS = (SetState, ClearState, ClearAllState, Output, Run)


def pinned_deployment(
    registry: Registry, deployment_id: str | None, target: Target
) -> tuple[Deployment, HandlerInfo | None] | Failed:
    """Where an attempt runs, and its handler there: the invocation's pinned deployment, or (not
    pinned yet) the newest deployment serving its service; a Failed effect when there is none."""
    if deployment_id is not None:
        deployment = registry.deployment(deployment_id)
        if deployment is None:
            reason = (
                f"deployment {deployment_id}, which this invocation is pinned to, was removed "
                "(move invocations to another deployment before removing theirs)"
            )
            return Failed(codes.DEPLOYMENT_GONE, reason, False)
    else:
        service = registry.service(target.service)
        current = registry.deployment(service.deployment_id) if service else None
        if current is None:
            return Failed(UNAVAILABLE_CODE, f"no deployment serves {target.service!r}", True)
        deployment = current
    served = next((s for s in deployment.services if s.name == target.service), None)
    return deployment, served.handlers.get(target.handler) if served is not None else None


class Attempt(AttemptMessages, AttemptWriter):
    """Runs attempt ``number`` of ``invocation_id`` until it ends, fails or is cancelled."""

    def __init__(
        self,
        invocation_id: str,
        number: int,
        *,
        partition: int,
        store: KeyValueReader,
        registry: Registry,
        channels: ChannelPool,
        proposer: LeaderProposer,
        limits: SizePolicy,
        slots: RunningSlots,
        timeouts: StreamTimeouts,
    ) -> None:
        self.invocation_id = invocation_id
        self._limits = limits
        self.number = number
        self._slots = slots
        self._timeouts = timeouts
        self._last_activity = 0.0
        self._suspension_requested = False
        self._partition = partition
        self._store = store
        self._registry = registry
        self._channels = channels
        self._proposer = proposer
        self._outgoing: asyncio.Queue[pb.RuntimeMessage | None] = asyncio.Queue()
        # The stream, once its opening messages are written (by the reader, see _open), and the
        # task writing what is queued after them: started by the first such message (counter
        # and greet attempts to an endpoint that batches queue none, so they have no writer).
        self._call: AttemptCall | None = None
        self._writer: asyncio.Task[None] | None = None
        self._effects: asyncio.Queue[InvokerEffect] = asyncio.Queue()
        self._effect_added = asyncio.Event()
        self._pin: InvokerEffect | None = None
        # The endpoint reads batched messages (its deployment's manifest said so).
        self._batches = False

    def notify(self, index: int, completion: Completion, completion_seq: int) -> None:
        notification = pb.Notification(
            index=index,
            completion=codec.completion_to_pb(completion),
            completion_seq=completion_seq,
        )
        self._send(pb.RuntimeMessage(notification=notification))

    def cancel(self, cancel_seq: int) -> None:
        self._send(pb.RuntimeMessage(cancel=pb.Cancel(cancel_seq=cancel_seq)))

    def notify_invocation_id(self, index: int, callee_id: str) -> None:
        notification = pb.Notification(index=index, invocation_id=callee_id)
        self._send(pb.RuntimeMessage(notification=notification))

    def quiet_s(self) -> float:
        """Seconds since the last message on this attempt's stream."""
        return asyncio.get_running_loop().time() - self._last_activity

    @property
    def suspension_requested(self) -> bool:
        return self._suspension_requested

    def request_suspension(self) -> None:
        """Ask the endpoint to suspend: the runtime closes its sending side of the stream; an SDK
        that waits for a completion then suspends, one that is computing does when it next waits.
        Nothing more is sent on this attempt (its completions reach the next one)."""
        if not self._suspension_requested:
            self._suspension_requested = True
            self._send(None)

    def _active(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    async def run(self) -> None:
        bind_invocation(self.invocation_id)  # every line of this task names the invocation
        if self._current() is None:
            return  # superseded before it started
        async with self._slots.slot(self):
            self._active()
            # (Read again: it may have waited for the slot.) The status read here is the one
            # the attempt runs with: no await between this read and the journal's.
            if (status := self._current()) is not None:
                await self._run(status)

    def _current(self) -> InvocationStatus | None:
        """The invocation's status if this attempt is still the one to run, else None."""
        status = read_status(self._store, self._partition, self.invocation_id)
        if status is not None and status.phase == "invoked" and status.attempt == self.number:
            return status
        return None

    async def _run(self, status: InvocationStatus) -> None:
        target = status.target
        bind_invocation(self.invocation_id, target.describe())
        pinned = pinned_deployment(self._registry, status.deployment_id, target)
        if isinstance(pinned, Failed):
            self._emit(pinned)
            await self._propose_loop()
            return
        deployment, handler = pinned
        # On a shared stream each message is its own part of the attempt's frame (the frames
        # of a turn travel together already): no batch to build.
        self._batches = deployment.message_batches and not deployment.multiplex
        if status.deployment_id is None:
            # The first attempt: pin the invocation here, so that every later attempt (retry,
            # resume, another leader) replays on the same code. The pin leads the attempt's first
            # append (no round trip of its own): no effect of the attempt precedes it in the log.
            self._pin = InvokerEffect(self.invocation_id, self.number, Pinned(deployment.id))
        inactivity_s, abort_s = self._timeouts.for_handler(handler)
        entries = read_journal(self._store, self._partition, self.invocation_id)
        # Read with the journal (no await between): the state is the one after every journaled
        # entry, which the SDK's replay of set/clear entries leaves unchanged.
        eager = self._eager_state(target.service, target.key)
        # Notifications that arrived before this task ran go after Start and the journal (the SDK
        # ignores those the journal already holds).
        early: list[pb.RuntimeMessage | None] = []
        while not self._outgoing.empty():
            early.append(self._outgoing.get_nowait())
        self._outgoing.put_nowait(
            pb.RuntimeMessage(
                start=pb.Start(
                    invocation_id=self.invocation_id,
                    service=target.service,
                    handler=target.handler,
                    key=target.key or "",
                    known_entries=len(entries),
                    random_seed=random_seed_of(self.invocation_id),
                    attempt=self.number,
                    cancel_seq=status.cancel_seq,
                    eager_state=eager,
                    message_batches=True,  # _read takes SdkMessage.batch apart
                )
            )
        )
        seal = self._channels.security.seal
        for index, entry in enumerate(entries):
            if seal is not None:
                entry = seal.unseal_entry(entry)  # the handler sees secret headers in clear
            self._outgoing.put_nowait(
                pb.RuntimeMessage(replay_entry=codec.entry_to_pb(index, entry))
            )
        for message in early:
            self._outgoing.put_nowait(message)
        call: AttemptCall
        if deployment.multiplex:
            call = self._channels.shared(deployment.uri, deployment.id).attempt()
        else:
            call = self._channels.invoke(deployment.uri)(
                metadata=self._channels.security.invoke_metadata(self.invocation_id, deployment.id)
            )
        opened = asyncio.get_running_loop().time()
        proposer = asyncio.create_task(self._propose_loop())
        reader = asyncio.create_task(self._read(call, deployment.uri))
        watchdog = StreamWatchdog(self, inactivity_s, abort_s).expired
        try:
            await asyncio.wait({reader, proposer, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            if proposer.done() and not proposer.cancelled() and proposer.exception() is not None:
                # What the SDK reported cannot be appended: end the attempt now rather than
                # wait for the SDK to give up (the supervisor starts it again).
                proposer.result()
            if not reader.done():
                await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                # No progress for inactivity + abort timeout (a hung handler, a stopped process):
                # give the attempt up; it is retried with backoff like any retryable failure.
                ATTEMPTS_ABORTED.inc()
                log.warning(
                    "%s attempt %d: no progress from %s for %g s, aborted",
                    self.invocation_id,
                    self.number,
                    deployment.uri,
                    inactivity_s + abort_s,
                )
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                reason = f"no progress from the endpoint for {inactivity_s + abort_s:g} s"
                self._emit(Failed(UNAVAILABLE_CODE, reason, True))
            else:
                reader.result()
            # The SDK has said how the attempt ended: close the stream now (the endpoint keeps it
            # open until we do), then append what it said.
            if self._writer is not None:
                self._writer.cancel()
            call.cancel()
            await proposer
        finally:
            self._call = None  # (no writer starts now)
            tasks = [proposer, reader] if self._writer is None else [proposer, reader, self._writer]
            for task in (*tasks, watchdog):
                task.cancel()  # (the watchdog's timer too: see StreamWatchdog)
            await asyncio.gather(*tasks, return_exceptions=True)
            # A cancelled task keeps its CancelledError, whose traceback holds the writer's
            # frame and so this attempt: dropping the task breaks that cycle, so that the
            # attempt is freed at once, not by the garbage collector (one cycle per attempt
            # made the node's collections long and frequent: issue 10).
            self._writer = None
            call.cancel()
            STREAM_DURATION.observe(asyncio.get_running_loop().time() - opened)

    def _eager_state(self, service: str, key: str | None) -> pb.EagerState | None:
        limit = self._limits.eager_state_bytes
        if key is None or limit <= 0:
            return None
        entries, complete = read_state(self._store, self._partition, service, key, limit)
        return pb.EagerState(
            entries=[pb.StateEntry(key=name, value=value) for name, value in entries],
            complete=complete,
        )

    async def _read(self, call: AttemptCall, uri: str) -> None:
        """Turn SDK messages into effects until the attempt ends one way or another."""
        await self._open(call)
        while True:
            try:
                message = await call.read()
            except grpc.aio.AioRpcError as exc:
                reason = f"endpoint {uri}: {exc.code().name}: {exc.details()}"
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    # A message over the size policy (either way): the same attempt would send
                    # it again, so retrying cannot help.
                    limit = self._limits.message_bytes
                    reason = f"a message exceeded the gRPC limit of {limit} bytes ({reason})"
                    self._emit(Failed(codes.TOO_LARGE, reason, False))
                else:
                    self._emit(Failed(UNAVAILABLE_CODE, reason, True))
                return
            self._active()
            if message is grpc.aio.EOF:
                self._emit(Failed(UNAVAILABLE_CODE, "the endpoint closed the stream early", True))
                return
            if not isinstance(message, pb.SdkMessage):
                # gRPC hands over None for bytes that do not parse as an SdkMessage.
                reason = f"endpoint {uri} sent a message that is not an SdkMessage"
                self._emit(Failed(PROTOCOL_ERROR_CODE, reason, True))
                return
            kind = message.WhichOneof("kind")
            if kind != "batch":
                if self._take(message, kind):
                    return
                continue
            # The messages of a batch are taken as if they had come one by one (a batch inside
            # is refused by _effect_of); what follows the attempt's last word is not read.
            for inner in message.batch.messages:
                if self._take(inner, inner.WhichOneof("kind")):
                    return

    def _take(self, message: pb.SdkMessage, kind: str | None) -> bool:
        """Emit the effect of one SDK message; True when it ends the attempt."""
        try:
            effect = self._effect_of(message, kind)
        except codec.ProtocolViolation as exc:
            effect = Failed(PROTOCOL_ERROR_CODE, str(exc), True)
        except InvalidCommand as exc:
            log.warning("%s: refused from the endpoint: %s", self.invocation_id, exc.message)
            effect = Failed(exc.code, exc.message, False)
        self._emit(effect)
        return isinstance(effect, End | Failed | Suspended)

    def _emit(self, effect: Effect) -> None:
        self._effects.put_nowait(InvokerEffect(self.invocation_id, self.number, effect))
        self._effect_added.set()

    async def _propose_loop(self) -> None:
        """Append effects in arrival order; those arriving during an append share the next one.

        Effects nobody waits for (``_silent``: state writes, reads the SDK answered itself, the
        output, a step's start) wait up to ``coalesce_ms`` for one that somebody waits for and
        go into the log with it: a handler doing get (answered eagerly), set, output and end
        costs one append, not one per message. Holding them is safe: until they are in the log
        they did not happen, and an attempt that dies first is replayed without them (the SDK
        waited for none of them). The bound keeps what they show others (a state value a
        shared handler reads while this one waits) from waiting longer than that.
        """
        hold_s = self._timeouts.coalesce_ms / 1000
        loop = asyncio.get_running_loop()
        batch: list[InvokerEffect] = []
        deadline = 0.0
        while True:
            self._effect_added.clear()
            if not batch and self._effects.empty():
                await self._effect_added.wait()
                continue
            if not batch:
                deadline = loop.time() + hold_s
            while not self._effects.empty():
                batch.append(self._effects.get_nowait())
            if all(_silent(item.effect) for item in batch):
                remaining = deadline - loop.time()
                if remaining > 0:
                    try:
                        await asyncio.wait_for(self._effect_added.wait(), remaining)
                    except TimeoutError:
                        pass
                    continue
            if self._pin is not None:
                batch.insert(0, self._pin)
                self._pin = None
            await self._propose(batch)
            appended = sum(isinstance(e.effect, JournalAppend) for e in batch)
            if appended:
                JOURNAL_ENTRIES.inc(appended)
            match batch[-1].effect:
                case End():
                    ATTEMPT_OUTCOMES["end"].inc()
                    return
                case Failed(retryable=retryable):
                    ATTEMPT_OUTCOMES["retry" if retryable else "failed"].inc()
                    return
                case Suspended():
                    ATTEMPT_OUTCOMES["suspended"].inc()
                    return
            batch = []

    async def _propose(self, batch: list[InvokerEffect]) -> None:
        fault_point("invoker.propose")
        for delay_s in (0.1, 0.5, 2.0, None):
            try:
                await self._proposer.propose(batch)
                INVOKER_APPENDS.inc()
                INVOKER_EFFECTS.inc(len(batch))
                return
            except LogError as exc:
                if delay_s is None:
                    raise
                log.warning("proposing effects of %s failed, retrying: %s", self.invocation_id, exc)
                await asyncio.sleep(delay_s)
