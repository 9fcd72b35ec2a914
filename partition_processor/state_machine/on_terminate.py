"""``Terminate``: cancel (cooperative) or kill (immediate) an invocation and its open calls."""

from __future__ import annotations

import msgspec

from partition_processor.actions import (
    AbortInvocation,
    Action,
    CancelInvocation,
    RespondToIngress,
)
from partition_processor.commands import Terminate
from partition_processor.journal import Call, Failure, Result, Success
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction
from partition_processor.values import InvocationStatus

CANCELLED = Failure(409, "cancelled")
KILLED = Failure(409, "killed")
# The outcome of a cancel that reached a running invocation: the handler sees it at its next
# await (Restate answers 202 for it, 200 for one ended at once).
CANCEL_SIGNALLED = Success(b"signalled")


def on_terminate(tx: Transaction, now_ms: int, command: Terminate, actions: list[Action]) -> bool:
    status = tx.status(command.invocation_id)
    outcome: Result = Success(b"")
    if status is None:
        outcome = Failure(404, f"invocation {command.invocation_id} not found")
    elif status.phase == "completed":
        outcome = Failure(409, "the invocation has already completed")
    else:
        _terminate_children(tx, status, command, actions)
        if command.mode == "kill" or status.phase in ("scheduled", "inboxed"):
            if status.phase == "invoked":
                actions.append(AbortInvocation(status.invocation_id))
            result = KILLED if command.mode == "kill" else CANCELLED
            lifecycle.complete(tx, status, result, now_ms, actions)
        else:
            outcome = CANCEL_SIGNALLED
            if status.cancel_seq == 0:
                _cancel(tx, status, now_ms, actions)
    if command.sink is not None:
        actions.append(RespondToIngress(command.sink, command.invocation_id, outcome))
    return isinstance(outcome, Success)


def _cancel(tx: Transaction, status: InvocationStatus, now_ms: int, actions: list[Action]) -> None:
    """Mark the cancellation in the completion order; the handler meets it at its next await."""
    seq = status.completions + 1
    status = msgspec.structs.replace(status, completions=seq, cancel_seq=seq, modified_ms=now_ms)
    if status.phase == "suspended":
        lifecycle.resume(tx, status, now_ms, actions)
        return
    tx.put_status(status)
    if status.phase == "invoked":
        actions.append(CancelInvocation(status.invocation_id, status.attempt, seq))


def _terminate_children(
    tx: Transaction, status: InvocationStatus, command: Terminate, actions: list[Action]
) -> None:
    """Calls still waiting for their callee: the callee is cancelled / killed too."""
    for index in range(status.journal_length):
        entry = tx.entry(status.invocation_id, index)
        if entry is not None and isinstance(entry.command, Call) and entry.completion is None:
            child = entry.command.invocation_id
            lifecycle.send(tx, child, Terminate(child, command.mode), actions)
