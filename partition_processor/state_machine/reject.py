"""What a record that cannot be applied does instead (DESIGN §11: apply is total).

The processor rolls back the record's partial writes and calls ``reject``: the invocation the
record belongs to fails terminally (lock released, callers and ingress waiters answered, as any
terminal failure), and a record that belongs to none is dropped. Everything here depends only on
the record and the store, so followers and replays reach the same outcome.
"""

from __future__ import annotations

from partition_processor import codes
from partition_processor.actions import AbortInvocation, Action, RespondToIngress
from partition_processor.commands import (
    AnnounceLeader,
    Attach,
    DeploymentGone,
    Envelope,
    InvocationResponse,
    Invoke,
    InvokerEffect,
    MoveDeployment,
    NotifySignal,
    PatchState,
    ProducerDedup,
    Purge,
    Terminate,
    TimerFired,
    TruncateOutbox,
)
from partition_processor.journal import Failure
from partition_processor.keys import KeyTooLong
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction
from partition_processor.values import TimerValue


def advance_dedup(tx: Transaction, envelope: Envelope) -> None:
    """Count a rejected record as seen: a re-shipment of it must not be tried again."""
    dedup = envelope.dedup
    if isinstance(dedup, ProducerDedup) and dedup.seq > tx.producer_seq(dedup.producer_id):
        tx.set_producer_seq(dedup.producer_id, dedup.seq)


def reject(tx: Transaction, envelope: Envelope, reason: str, actions: list[Action]) -> str | None:
    """Fail the invocation of a record whose apply raised; returns its id (None: dropped)."""
    command = envelope.command
    now_ms = envelope.timestamp_ms
    failure = Failure(
        codes.UNAPPLICABLE_RECORD,
        f"a record of this invocation could not be applied ({type(command).__name__}): {reason}",
    )
    invocation_id: str | None
    answered = False
    match command:
        case Invoke(invocation_id=invocation_id, sink=sink, caller=caller):
            if sink is not None:
                actions.append(RespondToIngress(sink, command.invocation_id, failure))
                answered = True
            if caller is not None:
                response = InvocationResponse(caller.invocation_id, caller.index, failure)
                lifecycle.send(tx, caller.invocation_id, response, actions)
                answered = True
        case (
            NotifySignal(sink=sink)
            | Attach(sink=sink)
            | Terminate(sink=sink)
            | Purge(sink=sink)
            | MoveDeployment(sink=sink)
            | DeploymentGone(sink=sink)
        ):
            invocation_id = command.invocation_id
            if sink is not None:
                actions.append(RespondToIngress(sink, invocation_id, failure))
                answered = True
        case PatchState(sink=sink):
            # Belongs to no invocation: its request is answered, nothing else fails.
            invocation_id = None
            if sink is not None:
                actions.append(RespondToIngress(sink, "", failure))
        case (
            InvokerEffect(invocation_id=invocation_id)
            | InvocationResponse(invocation_id=invocation_id)
        ):
            pass
        case TimerFired(wake_ms=wake_ms, timer_id=timer_id):
            invocation_id = _timer_owner(tx, wake_ms, timer_id)
            if 0 <= wake_ms < 2**64:
                tx.delete_timer(wake_ms, timer_id)  # a timer that cannot fire must not refire
        case AnnounceLeader() | TruncateOutbox():
            invocation_id = None
    if invocation_id is None:
        return None
    try:
        status = tx.status(invocation_id)
    except KeyTooLong:
        status = None  # an id no invocation can have; its waiters are answered above
    if status is None or status.phase == "completed":
        return invocation_id if answered else None
    if status.phase == "invoked":
        actions.append(AbortInvocation(invocation_id))
    lifecycle.complete(tx, status, failure, now_ms, actions)
    return invocation_id


def _timer_owner(tx: Transaction, wake_ms: int, timer_id: str) -> str | None:
    try:
        timer: TimerValue | None = tx.timer(wake_ms, timer_id)
    except Exception:  # noqa: BLE001 - an unreadable row: the timer belongs to no one we know
        return None
    return None if timer is None else timer.invocation_id
