"""Values stored in the partition store (DESIGN §5 store layout)."""

from __future__ import annotations

from typing import Literal

import msgspec

from partition_processor.commands import (
    CallerRef,
    IngressSink,
    InvocationResponse,
    Invoke,
    NotifySignal,
    RetryPolicy,
    Target,
    Terminate,
)
from partition_processor.journal import Failure, Result

Phase = Literal["scheduled", "inboxed", "invoked", "suspended", "backing_off", "completed"]


class AttemptFailure(msgspec.Struct, frozen=True):
    """Why the last attempt failed (shown on the status page; drives nothing)."""

    attempt: int
    code: int
    message: str


class InvocationStatus(msgspec.Struct, frozen=True):
    """Everything the partition knows about one invocation except its journal."""

    invocation_id: str
    target: Target
    phase: Phase
    created_ms: int
    modified_ms: int
    attempt: int = 0
    journal_length: int = 0
    retry_policy: RetryPolicy = RetryPolicy()
    sinks: list[IngressSink] = []
    idempotency_key: str | None = None
    completion_retention_ms: int = 0
    result: Result | None = None
    last_failure: AttemptFailure | None = None
    retry_count: int = 0
    callers: list[CallerRef] = []  # calling invocations waiting for the result
    awaiting: list[int] = []  # entries a suspended invocation waits for
    completions: int = 0  # completion_seq of the latest completed entry
    # Set by a cancel: the handler sees a TerminalError at its first await of a future not
    # completed before this point in the completion order (replays decide the same way).
    cancel_seq: int = 0
    # When a delayed invocation is (or was) due to start; 0 = as soon as it arrived.
    invoke_at_ms: int = 0
    # The deployment the first attempt ran on (None: not started yet, or started before
    # pinning existed): every later attempt goes there (README, Versions).
    deployment_id: str | None = None


class ObjectLock(msgspec.Struct, array_like=True, frozen=True):
    """A virtual object's (or workflow's) lock: its holder, and where the object's inbox starts.

    ``inbox_head``: every queued entry below this sequence number was already popped. Popping
    from there, not from the start of the object's inbox, keeps a hot key's hand-off from
    stepping over the deleted rows (tombstones) of every invocation it ever queued.
    ``inbox_tail``: no entry at or above this sequence number is queued (entries are queued
    only while the lock is held, and the lock is freed only with an empty inbox), so a release
    with ``inbox_head >= inbox_tail`` frees the lock without a scan of the inbox (issue 10: an
    object's every invocation paid one). -1: unknown (a row written before the field existed):
    the inbox is scanned.
    """

    holder: str
    inbox_head: int = 0
    inbox_tail: int = -1


class QueuedPatch(msgspec.Struct, array_like=True, frozen=True):
    """A ``PatchState`` waiting in its object's inbox for the invocations queued before it.

    Array-like so that its row starts with a msgpack array byte (0x90-0x9f), which an inbox row
    holding an invocation id (UTF-8 text) never does: ``tables.decode_inbox`` tells them apart.
    """

    new_state: dict[str, bytes]
    version: str | None = None
    sink: IngressSink | None = None
    patch_id: str = ""  # "" for a patch queued before patches had ids


class SeenPatch(msgspec.Struct, array_like=True, frozen=True):
    """A state patch this object has seen: queued (``outcome`` None) or decided at ``at_ms``
    (the timestamp of the record that queued or decided it), with the outcome its sink got."""

    patch_id: str
    at_ms: int
    outcome: Result | None = None


class SeenPatches(msgspec.Struct, frozen=True):
    """The state patches an object saw lately, so that a repeated ``PatchState`` record (a
    producer retry, an ingress appending again) is dropped instead of applied again."""

    patches: list[SeenPatch] = []


InboxEntry = str | QueuedPatch  # an invocation id, or a queued state patch


class FsmState(msgspec.Struct, frozen=True):
    """Per-partition bookkeeping, written in every batch."""

    applied_lsn: int = -1
    leader_epoch: int = 0
    leader_node: str = ""
    inbox_seq: int = 0
    outbox_seq: int = 0


class RetryTimer(msgspec.Struct, tag="retry", frozen=True):
    """Start the next attempt of an invocation that is backing off."""

    invocation_id: str
    attempt: int


class PurgeTimer(msgspec.Struct, tag="purge", frozen=True):
    """Forget a completed invocation once its retention has passed."""

    invocation_id: str


class SleepTimer(msgspec.Struct, tag="sleep", frozen=True):
    """Complete the ``Sleep`` entry ``index`` of an invocation."""

    invocation_id: str
    index: int


class DelayedInvokeTimer(msgspec.Struct, tag="delayed_invoke", frozen=True):
    """Admit a scheduled invocation (a delayed send) now."""

    invocation_id: str


TimerValue = RetryTimer | PurgeTimer | SleepTimer | DelayedInvokeTimer


class PromiseValue(msgspec.Struct, frozen=True):
    """A workflow's durable promise: its result once completed, else who waits for it."""

    result: Result | None = None
    waiters: list[CallerRef] = []


OutboxCommand = Invoke | InvocationResponse | NotifySignal | Terminate


class OutboxMessage(msgspec.Struct, frozen=True):
    """A record for another partition (or this one), shipped by the leader's outbox shipper.

    ``route`` is the invocation id whose partition key picks the target partition.
    """

    route: str
    command: OutboxCommand


__all__ = [
    "AttemptFailure",
    "DelayedInvokeTimer",
    "OutboxMessage",
    "PromiseValue",
    "SleepTimer",
    "Failure",
    "FsmState",
    "InvocationStatus",
    "Phase",
    "PurgeTimer",
    "QueuedPatch",
    "SeenPatch",
    "SeenPatches",
    "InboxEntry",
    "RetryTimer",
    "TimerValue",
]
