"""``NotifySignal``: resolve or reject an awakeable; the ingress caller learns 404 / 409."""

from __future__ import annotations

from partition_processor.actions import Action, RespondToIngress
from partition_processor.commands import NotifySignal
from partition_processor.journal import Awakeable, Failure, Result, Success
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction

NOT_FOUND = 404
ALREADY_COMPLETED = 409


def on_notify_signal(
    tx: Transaction, now_ms: int, command: NotifySignal, actions: list[Action]
) -> bool:
    status = tx.status(command.invocation_id)
    entry = tx.entry(command.invocation_id, command.index)
    outcome: Result
    if (
        status is None
        or status.phase == "completed"
        or entry is None
        or not isinstance(entry.command, Awakeable)
    ):
        outcome = Failure(NOT_FOUND, "awakeable not found (unknown id or its invocation ended)")
    elif entry.completion is not None:
        outcome = Failure(ALREADY_COMPLETED, "awakeable already completed")
    else:
        lifecycle.complete_entry(tx, status, command.index, entry, command.result, now_ms, actions)
        outcome = Success(b"")
    if command.sink is not None:
        actions.append(RespondToIngress(command.sink, command.invocation_id, outcome))
    return isinstance(outcome, Success)
