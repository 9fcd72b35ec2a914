"""``InvocationResponse``: a callee's result completes the caller's ``Call`` entry."""

from __future__ import annotations

from partition_processor.actions import Action
from partition_processor.commands import InvocationResponse
from partition_processor.journal import Call
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction


def on_invocation_response(
    tx: Transaction, now_ms: int, command: InvocationResponse, actions: list[Action]
) -> bool:
    status = tx.status(command.invocation_id)
    entry = tx.entry(command.invocation_id, command.index)
    if (
        status is None
        or status.phase == "completed"
        or entry is None
        or not isinstance(entry.command, Call)
        or entry.completion is not None
    ):
        return False
    lifecycle.complete_entry(tx, status, command.index, entry, command.result, now_ms, actions)
    return True
