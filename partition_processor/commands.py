"""Log records (DESIGN §3): an ``Envelope`` around one command.

Records are msgpack-encoded msgspec structs. Unions are tagged by name so that a log written by
this version stays readable by later ones (new variants get new tags; old tags are never reused).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from partition_processor.journal import Completion, Failure, JournalCommand, Result
from partition_processor.limits import backoff_ms

RECORD_VERSION = 1

# ---------------------------------------------------------------- sources and dedup


class IngressSource(msgspec.Struct, tag="ingress", frozen=True):
    node: str


class LeaderSource(msgspec.Struct, tag="leader", frozen=True):
    partition: int
    epoch: int
    node: str


class PartitionSource(msgspec.Struct, tag="partition", frozen=True):
    partition: int


class AdminSource(msgspec.Struct, tag="admin", frozen=True):
    pass


class SubscriptionSource(msgspec.Struct, tag="subscription", frozen=True):
    """A record of a Kafka topic that a subscription turned into an invocation (DESIGN §8a)."""

    subscription_id: str


Source = IngressSource | LeaderSource | PartitionSource | AdminSource | SubscriptionSource


class LeaderDedup(msgspec.Struct, tag="leader", frozen=True):
    """Fences records proposed by a leader: applied only while ``epoch`` is the current one."""

    epoch: int
    seq: int


class ProducerDedup(msgspec.Struct, tag="producer", frozen=True):
    """Another partition's outbox or a subscription: the receiver drops repeated sequences."""

    producer_id: str
    seq: int


Dedup = LeaderDedup | ProducerDedup

# ---------------------------------------------------------------- shared parts

ServiceType = Literal["service", "virtual_object", "workflow"]
HandlerKind = Literal["none", "exclusive", "shared", "workflow"]


class Target(msgspec.Struct, frozen=True):
    """The handler an invocation runs. ``key`` is set for virtual objects and workflows."""

    service: str
    handler: str
    service_type: ServiceType = "service"
    handler_kind: HandlerKind = "none"
    key: str | None = None

    def describe(self) -> str:
        if self.key is None:
            return f"{self.service}/{self.handler}"
        return f"{self.service}/{self.key}/{self.handler}"


class RetryPolicy(msgspec.Struct, frozen=True):
    """Invocation retry backoff: ``initial * factor**(attempt-1)`` capped at ``max_interval``."""

    initial_interval_ms: int = 500
    factor: float = 2.0
    max_interval_ms: int = 60_000
    max_attempts: int = 0  # 0 = unlimited

    def delay_ms(self, attempt: int) -> int:
        """Backoff before attempt ``attempt + 1`` after attempt ``attempt`` failed."""
        return backoff_ms(self.initial_interval_ms, self.factor, attempt - 1, self.max_interval_ms)


class IngressSink(msgspec.Struct, frozen=True):
    """Where to deliver a result: the ingress node and its request waiting for it."""

    node: str
    request_id: str


# ---------------------------------------------------------------- commands


class CallerRef(msgspec.Struct, frozen=True):
    """The journal entry of the invocation waiting for this one's result."""

    invocation_id: str
    index: int


class Invoke(msgspec.Struct, tag="invoke", frozen=True):
    """Start an invocation (or, if its id already exists, attach ``sink`` to it).

    ``invoke_at_ms`` > the record's timestamp schedules it (a delayed send) with a timer.
    """

    invocation_id: str
    target: Target
    argument: bytes
    headers: list[tuple[str, str]] = []
    idempotency_key: str | None = None
    sink: IngressSink | None = None
    retry_policy: RetryPolicy = RetryPolicy()
    completion_retention_ms: int = 0
    caller: CallerRef | None = None
    invoke_at_ms: int = 0
    # A workflow submission: when the id already exists, answer 409 instead of attaching.
    submission: bool = False
    # A one-way request waiting to learn whether this record created the invocation.
    receipt_sink: IngressSink | None = None
    # When the id exists: at most this many ingress requests wait for its result; past it the
    # new one is answered 429 (0: no bound, records written before the bound existed).
    max_attached: int = 0
    # Set when the event could not become a runnable invocation (a Kafka record without the key
    # its keyed sink needs, or a value that is not JSON): the invocation is created already
    # failed with this result, so the event stays visible instead of being lost or blocking.
    rejected: Failure | None = None


class ResolvedTarget(msgspec.Struct, frozen=True):
    """What the invoker looked up in the registry for a call or send: the state machine has no
    registry, so the callee's type, kind and policies travel in the record."""

    target: Target
    retry_policy: RetryPolicy = RetryPolicy()
    completion_retention_ms: int = 0


class JournalAppend(msgspec.Struct, tag="append", frozen=True):
    """The SDK produced journal entry ``index``.

    For calls and sends, ``resolved`` is the callee, or None when no deployment serves it (the
    call then fails with 404). ``completion``: a state read the SDK answered itself from the
    attempt's eager state; it is journaled as the read's result (the journaled value wins on
    replay) instead of reading the store, and nobody is notified.
    """

    index: int
    command: JournalCommand
    resolved: ResolvedTarget | None = None
    completion: Completion | None = None


class CompleteRun(msgspec.Struct, tag="complete_run", frozen=True):
    """The result of the ``ctx.run`` at entry ``index``."""

    index: int
    result: Result


class End(msgspec.Struct, tag="end", frozen=True):
    """The attempt finished; the invocation's result is its Output entry."""


class Failed(msgspec.Struct, tag="failed", frozen=True):
    """The attempt failed: retried with backoff when ``retryable``, else a terminal result."""

    code: int
    message: str
    retryable: bool


class Suspended(msgspec.Struct, tag="suspended", frozen=True):
    """The SDK closed the stream while waiting for the completion of one of ``awaiting``."""

    awaiting: list[int]


class Pinned(msgspec.Struct, tag="pinned", frozen=True):
    """The first attempt runs on ``deployment_id``: every later attempt goes there too
    (README, Versions). Proposed by the invoker before the attempt's stream opens."""

    deployment_id: str


Effect = JournalAppend | CompleteRun | End | Failed | Suspended | Pinned


class InvokerEffect(msgspec.Struct, tag="invoker_effect", frozen=True):
    """What the leader's invoker observed on attempt ``attempt`` of an invocation."""

    invocation_id: str
    attempt: int
    effect: Effect


class TimerFired(msgspec.Struct, tag="timer_fired", frozen=True):
    wake_ms: int
    timer_id: str


class AnnounceLeader(msgspec.Struct, tag="announce_leader", frozen=True):
    """A node claims leadership of a partition; the first higher epoch in the log wins."""

    epoch: int
    node: str


class InvocationResponse(msgspec.Struct, tag="invocation_response", frozen=True):
    """A callee's result, for the ``Call`` entry ``index`` of ``invocation_id``."""

    invocation_id: str
    index: int
    result: Result


class NotifySignal(msgspec.Struct, tag="notify_signal", frozen=True):
    """Complete the awakeable at entry ``index`` of ``invocation_id``.

    ``sink`` (ingress) gets Success when it was completed, else Failure 404 / 409.
    """

    invocation_id: str
    index: int
    result: Result
    sink: IngressSink | None = None


class Attach(msgspec.Struct, tag="attach", frozen=True):
    """Deliver an invocation's result to ``sink``: when it completes (``wait``), or now (its
    result, or Failure 470 while it runs). Failure 404 when there is no such invocation."""

    invocation_id: str
    sink: IngressSink
    wait: bool = True
    # At most this many ingress requests wait for the result; past it the new one gets 429
    # (0: no bound). The bound travels in the record so every replica applies it alike.
    max_attached: int = 0


TerminateMode = Literal["cancel", "kill"]


class Terminate(msgspec.Struct, tag="terminate", frozen=True):
    """Cancel (cooperative: the handler sees a TerminalError at its next await) or kill
    (immediate) an invocation and the calls it is waiting for."""

    invocation_id: str
    mode: TerminateMode
    sink: IngressSink | None = None


class Purge(msgspec.Struct, tag="purge", frozen=True):
    """Forget a completed invocation now (and a workflow's state and promises)."""

    invocation_id: str
    sink: IngressSink | None = None


class MoveDeployment(msgspec.Struct, tag="move_deployment", frozen=True):
    """An operator moves an unfinished invocation to another deployment: its next attempt runs
    there (the journal mismatch check guards the replay). ``sink`` gets Success, or Failure 404 /
    409 (no such invocation, or it has completed)."""

    invocation_id: str
    deployment_id: str
    sink: IngressSink | None = None


class DeploymentGone(msgspec.Struct, tag="deployment_gone", frozen=True):
    """``deployment_id`` was removed with force: the invocation, if still pinned to it, fails
    with 573 now (its running attempt is stopped). ``sink`` gets Success, or Failure 404 / 409
    (no unfinished invocation, or pinned elsewhere)."""

    invocation_id: str
    deployment_id: str
    sink: IngressSink | None = None


class PatchState(msgspec.Struct, tag="patch_state", frozen=True):
    """An operator replaces the state of a virtual object or workflow instance.

    ``new_state`` is the whole new state (names not in it are removed). Applied only if the
    state's current version (``tables.state_version``) is ``version``, when given; never under a
    running invocation of the object: while its lock is held the patch waits in the object's
    inbox behind the invocations queued before it. ``sink`` gets Success (the new version, as
    UTF-8) or Failure 409 (version mismatch; nothing changed).

    ``patch_id`` names the request (the ingress draws it once): a second record of the same
    patch (a producer retry, an append repeated after a timeout) is dropped, its sink told the
    first one's outcome, for ``PATCH_DEDUP_RETENTION_MS`` after that one was decided. Records
    written before patches had ids carry "" and are applied as every copy comes.
    """

    service: str
    key: str
    new_state: dict[str, bytes]
    version: str | None = None
    sink: IngressSink | None = None
    patch_id: str = ""


class TruncateOutbox(msgspec.Struct, tag="truncate_outbox", frozen=True):
    """Outbox messages up to ``upto_seq`` were shipped; drop them."""

    upto_seq: int


Command = (
    Invoke
    | InvokerEffect
    | TimerFired
    | AnnounceLeader
    | InvocationResponse
    | NotifySignal
    | TruncateOutbox
    | Attach
    | Terminate
    | Purge
    | MoveDeployment
    | DeploymentGone
    | PatchState
)


class Envelope(msgspec.Struct, frozen=True):
    """One log record."""

    source: Source
    timestamp_ms: int
    command: Command
    dedup: Dedup | None = None
    v: int = RECORD_VERSION


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode_envelope(payload: bytes) -> Envelope:
    return _decoder.decode(payload)
