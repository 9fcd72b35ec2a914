"""Versions (README, Versions): an operator re-pins an unfinished invocation to another
deployment (``MoveDeployment``), or removed its deployment with force (``DeploymentGone``)."""

from __future__ import annotations

import msgspec

from partition_processor import codes
from partition_processor.actions import AbortInvocation, Action, RespondToIngress
from partition_processor.commands import DeploymentGone, MoveDeployment
from partition_processor.journal import Failure, Result, Success
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction


def on_move(tx: Transaction, now_ms: int, command: MoveDeployment, actions: list[Action]) -> bool:
    status = tx.status(command.invocation_id)
    outcome: Result
    if status is None:
        outcome = Failure(404, f"invocation {command.invocation_id} not found")
    elif status.phase == "completed":
        outcome = Failure(409, "a completed invocation cannot be moved")
    else:
        moved = msgspec.structs.replace(status, deployment_id=command.deployment_id)
        tx.put_status(moved)
        if moved.phase == "invoked":
            # A running attempt is superseded by one on the new deployment, which replays the
            # journal there; otherwise the next attempt (retry, resume) runs there.
            lifecycle.resume(tx, moved, now_ms, actions)
        outcome = Success(b"")
    if command.sink is not None:
        actions.append(RespondToIngress(command.sink, command.invocation_id, outcome))
    return isinstance(outcome, Success)


def on_deployment_gone(
    tx: Transaction, now_ms: int, command: DeploymentGone, actions: list[Action]
) -> bool:
    """Fail the invocation now if it is still pinned to the removed deployment: its journal
    belongs to code that is gone, so it ends with a clear status instead of waiting."""
    status = tx.status(command.invocation_id)
    outcome: Result
    if status is None or status.phase == "completed":
        outcome = Failure(404, f"no unfinished invocation {command.invocation_id}")
    elif status.deployment_id != command.deployment_id:
        outcome = Failure(409, f"the invocation is not pinned to {command.deployment_id}")
    else:
        if status.phase == "invoked":
            actions.append(AbortInvocation(status.invocation_id))
        reason = (
            f"deployment {command.deployment_id}, which this invocation is pinned to, was removed"
        )
        lifecycle.complete(tx, status, Failure(codes.DEPLOYMENT_GONE, reason), now_ms, actions)
        outcome = Success(b"")
    if command.sink is not None:
        actions.append(RespondToIngress(command.sink, command.invocation_id, outcome))
    return isinstance(outcome, Success)
