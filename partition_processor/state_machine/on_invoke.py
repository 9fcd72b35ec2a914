"""``Invoke``: create an invocation, or attach a new waiter to an existing one (idempotency)."""

from __future__ import annotations

import msgspec

from partition_processor.actions import Action, RespondToIngress
from partition_processor.commands import Invoke
from partition_processor.journal import Input, JournalEntry
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction
from partition_processor.values import InvocationStatus


def on_invoke(tx: Transaction, now_ms: int, command: Invoke, actions: list[Action]) -> bool:
    existing = tx.status(command.invocation_id)
    if existing is not None:
        _attach(tx, existing, command, actions)
        return False
    status = InvocationStatus(
        invocation_id=command.invocation_id,
        target=command.target,
        phase="inboxed",
        created_ms=now_ms,
        modified_ms=now_ms,
        journal_length=1,
        retry_policy=command.retry_policy,
        sinks=[command.sink] if command.sink is not None else [],
        idempotency_key=command.idempotency_key,
        completion_retention_ms=command.completion_retention_ms,
    )
    tx.put_entry(command.invocation_id, 0, JournalEntry(Input(command.argument, command.headers)))
    target = command.target
    if target.handler_kind == "exclusive" and target.key is not None:
        if tx.lock_holder(target.service, target.key) is not None:
            tx.put_status(status)
            tx.enqueue_inbox(target.service, target.key, command.invocation_id)
            return True
        tx.set_lock(target.service, target.key, command.invocation_id)
    lifecycle.start(tx, status, now_ms, actions)
    return True


def _attach(
    tx: Transaction, status: InvocationStatus, command: Invoke, actions: list[Action]
) -> None:
    """The same invocation id again: a retried idempotent request or a duplicated record."""
    sink = command.sink
    if sink is None:
        return
    if status.phase == "completed":
        assert status.result is not None
        actions.append(RespondToIngress(sink, status.invocation_id, status.result))
    elif sink not in status.sinks:
        tx.put_status(msgspec.structs.replace(status, sinks=[*status.sinks, sink]))
