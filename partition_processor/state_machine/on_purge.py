"""``Purge``: forget a completed invocation before its retention ends."""

from __future__ import annotations

from partition_processor.actions import Action, RespondToIngress
from partition_processor.commands import Purge
from partition_processor.journal import Failure, Result, Success
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction


def on_purge(tx: Transaction, command: Purge, actions: list[Action]) -> bool:
    status = tx.status(command.invocation_id)
    outcome: Result
    if status is None:
        outcome = Failure(404, f"invocation {command.invocation_id} not found")
    elif status.phase != "completed":
        outcome = Failure(409, "only completed invocations can be purged")
    else:
        # Its retention timer goes too: it would otherwise purge a later run of the same
        # workflow key (or idempotency key), which reuses the invocation id and the timer id.
        tx.delete_timer(*lifecycle.retention_timer(status))
        lifecycle.forget(tx, status)
        outcome = Success(b"")
    if command.sink is not None:
        actions.append(RespondToIngress(command.sink, command.invocation_id, outcome))
    return isinstance(outcome, Success)
