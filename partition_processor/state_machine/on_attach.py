"""``Attach``: wait for, or read, an invocation's result (attach / output endpoints)."""

from __future__ import annotations

import msgspec

from partition_processor import codes
from partition_processor.actions import Action, RespondToIngress
from partition_processor.commands import Attach
from partition_processor.journal import Failure
from partition_processor.tables import Transaction
from partition_processor.values import InvocationStatus

NOT_FOUND = 404
NOT_READY = 470
TOO_MANY_ATTACHED = codes.TOO_MANY_ATTACHED


def attach_refused(status: InvocationStatus, max_attached: int) -> Failure | None:
    """Failure 429 when ``max_attached`` (0: unbounded) requests wait for ``status`` already."""
    if max_attached <= 0 or len(status.sinks) < max_attached:
        return None
    return Failure(
        TOO_MANY_ATTACHED,
        f"{len(status.sinks)} requests already wait for invocation {status.invocation_id}",
    )


def on_attach(tx: Transaction, command: Attach, actions: list[Action]) -> bool:
    status = tx.status(command.invocation_id)
    if status is None:
        failure = Failure(NOT_FOUND, f"invocation {command.invocation_id} not found")
        actions.append(RespondToIngress(command.sink, command.invocation_id, failure, refused=True))
        return False
    if status.phase == "completed":
        assert status.result is not None
        actions.append(
            RespondToIngress(
                command.sink, command.invocation_id, status.result, target=status.target
            )
        )
        return True
    if not command.wait:
        failure = Failure(NOT_READY, "the invocation has not completed yet")
        actions.append(RespondToIngress(command.sink, command.invocation_id, failure, refused=True))
        return True
    if command.sink not in status.sinks:
        if (refused := attach_refused(status, command.max_attached)) is not None:
            actions.append(
                RespondToIngress(command.sink, command.invocation_id, refused, refused=True)
            )
            return True
        tx.put_status(msgspec.structs.replace(status, sinks=[*status.sinks, command.sink]))
    return True
