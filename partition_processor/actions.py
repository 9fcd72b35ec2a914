"""Actions: what the leader must do after a batch commits. Data only; the runtime executes them."""

from __future__ import annotations

import msgspec

from partition_processor.commands import IngressSink, Target
from partition_processor.journal import Completion, Result


class StartInvocation(msgspec.Struct, frozen=True):
    """Open an attempt: the invoker reads the status and journal from the committed store."""

    invocation_id: str
    attempt: int


class NotifyInvoker(msgspec.Struct, frozen=True):
    """Deliver the completion of journal entry ``index`` to the running attempt."""

    invocation_id: str
    attempt: int
    index: int
    completion: Completion
    completion_seq: int = 0


class SendReceipt(msgspec.Struct, frozen=True):
    """What a one-way request learns once its ``Invoke`` is applied (Restate's submit
    notification): whether it created the invocation, and when that one is due to run."""

    new: bool
    invoke_at_ms: int = 0


class RespondToIngress(msgspec.Struct, frozen=True):
    """Give the invocation's result to an ingress request waiting for it.

    ``refused``: the partition refused the request itself (no such invocation, no result yet),
    so the failure is not the invocation's outcome. ``receipt``: the answer to a one-way request.
    ``target``: whose result it is, when known (the ingress sets the output's content type).
    """

    sink: IngressSink
    invocation_id: str
    result: Result
    refused: bool = False
    receipt: SendReceipt | None = None
    target: Target | None = None


class RegisterTimer(msgspec.Struct, frozen=True):
    """A timer row was written: the timer service must fire it at ``wake_ms``."""

    wake_ms: int
    timer_id: str


class NotifyInvocationId(msgspec.Struct, frozen=True):
    """Tell the running attempt the id given to the call or send at entry ``index``."""

    invocation_id: str
    attempt: int
    index: int
    callee_id: str


class CancelInvocation(msgspec.Struct, frozen=True):
    """Tell the running attempt it was cancelled at ``cancel_seq`` of the completion order."""

    invocation_id: str
    attempt: int
    cancel_seq: int


class AbortInvocation(msgspec.Struct, frozen=True):
    """Stop the running attempt now (the invocation was killed)."""

    invocation_id: str


class ShipOutbox(msgspec.Struct, frozen=True):
    """An outbox row was written: the shipper has something to deliver."""

    seq: int


Action = (
    StartInvocation
    | NotifyInvoker
    | NotifyInvocationId
    | RespondToIngress
    | RegisterTimer
    | ShipOutbox
    | CancelInvocation
    | AbortInvocation
)
