"""``Invoke``: create an invocation, or attach a new waiter to an existing one (idempotency)."""

from __future__ import annotations

import msgspec

from partition_processor.actions import Action, RegisterTimer, RespondToIngress, SendReceipt
from partition_processor.commands import InvocationResponse, Invoke
from partition_processor.journal import Failure, Input, JournalEntry, Success
from partition_processor.limits import clamp_ms
from partition_processor.state_machine import lifecycle
from partition_processor.state_machine.on_attach import attach_refused
from partition_processor.tables import Transaction
from partition_processor.values import DelayedInvokeTimer, InvocationStatus


def delayed_invoke_timer_id(invocation_id: str) -> str:
    return f"invoke:{invocation_id}"


def on_invoke(tx: Transaction, now_ms: int, command: Invoke, actions: list[Action]) -> bool:
    existing = tx.status(command.invocation_id)
    invoke_at_ms = clamp_ms(command.invoke_at_ms)
    delayed = invoke_at_ms > now_ms
    if command.receipt_sink is not None:
        if existing is None:
            receipt = SendReceipt(True, invoke_at_ms if delayed else 0)
        else:
            receipt = SendReceipt(False, existing.invoke_at_ms)
        actions.append(
            RespondToIngress(
                command.receipt_sink, command.invocation_id, Success(b""), receipt=receipt
            )
        )
    if existing is not None:
        if command.submission:
            _reject_resubmission(existing, command, actions)
        else:
            _attach(tx, existing, command, actions)
        return False
    status = InvocationStatus(
        invocation_id=command.invocation_id,
        target=command.target,
        phase="scheduled",
        created_ms=now_ms,
        modified_ms=now_ms,
        journal_length=1,
        retry_policy=command.retry_policy,
        sinks=[command.sink] if command.sink is not None else [],
        idempotency_key=command.idempotency_key,
        completion_retention_ms=command.completion_retention_ms,
        callers=[command.caller] if command.caller is not None else [],
        invoke_at_ms=invoke_at_ms if delayed else 0,
    )
    if command.rejected is not None:
        # Never runs: it is recorded as failed (kept for its retention) and its waiters answered.
        lifecycle.complete(tx, status, command.rejected, now_ms, actions)
        return True
    tx.put_entry(command.invocation_id, 0, JournalEntry(Input(command.argument, command.headers)))
    if delayed:
        timer_id = delayed_invoke_timer_id(command.invocation_id)
        tx.put_timer(invoke_at_ms, timer_id, DelayedInvokeTimer(command.invocation_id))
        tx.put_status(status)
        actions.append(RegisterTimer(invoke_at_ms, timer_id))
    else:
        lifecycle.admit(tx, status, now_ms, actions)
    return True


def _reject_resubmission(status: InvocationStatus, command: Invoke, actions: list[Action]) -> None:
    """A workflow runs once per key: a second submission is refused (409)."""
    if command.sink is not None and command.sink not in status.sinks:
        message = f"workflow {status.target.service}/{status.target.key} was already submitted"
        actions.append(RespondToIngress(command.sink, status.invocation_id, Failure(409, message)))


def _attach(
    tx: Transaction, status: InvocationStatus, command: Invoke, actions: list[Action]
) -> None:
    """The same invocation id again: a retried idempotent request or a duplicated record."""
    sink, caller = command.sink, command.caller
    if status.phase == "completed":
        assert status.result is not None
        if sink is not None:
            actions.append(
                RespondToIngress(sink, status.invocation_id, status.result, target=status.target)
            )
        if caller is not None:
            response = InvocationResponse(caller.invocation_id, caller.index, status.result)
            lifecycle.send(tx, caller.invocation_id, response, actions)
        return
    if sink is not None and sink not in status.sinks:
        refused = attach_refused(status, command.max_attached)
        if refused is not None:
            actions.append(RespondToIngress(sink, status.invocation_id, refused, refused=True))
            sink = None  # answered; a caller in the same record still attaches
    sinks = status.sinks if sink is None or sink in status.sinks else [*status.sinks, sink]
    callers = (
        status.callers if caller is None or caller in status.callers else [*status.callers, caller]
    )
    if sinks is not status.sinks or callers is not status.callers:
        tx.put_status(msgspec.structs.replace(status, sinks=sinks, callers=callers))
