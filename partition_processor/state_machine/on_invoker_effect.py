"""``InvokerEffect``: journal entries, run results, the end, failure or suspension of an attempt.

Every effect names its attempt; effects of any attempt but the current one are dropped, and an
entry is appended only at the journal's current length, so a duplicated or late record never
changes anything twice.
"""

from __future__ import annotations

from typing import assert_never

import msgspec

from partition_processor import codes
from partition_processor.actions import Action, NotifyInvocationId, RegisterTimer
from partition_processor.commands import (
    CallerRef,
    CompleteRun,
    End,
    Failed,
    Invoke,
    InvokerEffect,
    JournalAppend,
    NotifySignal,
    Pinned,
    Suspended,
    Terminate,
)
from partition_processor.ids import (
    InvalidAwakeableId,
    call_entropy,
    invocation_id_for,
    is_invocation_id,
    parse_awakeable_id,
    workflow_run_id,
)
from partition_processor.journal import (
    Awakeable,
    Call,
    CancelInvocation,
    ClearAllState,
    ClearState,
    CompleteAwakeable,
    CompletePromise,
    Completion,
    Failure,
    GetPromise,
    GetState,
    GetStateKeys,
    Input,
    JournalCommand,
    JournalEntry,
    OneWayCall,
    Output,
    PeekPromise,
    Run,
    SetState,
    Sleep,
    StateKeys,
    Success,
    Void,
)
from partition_processor.limits import clamp_ms
from partition_processor.state_machine import lifecycle, promises
from partition_processor.tables import Transaction
from partition_processor.values import AttemptFailure, InvocationStatus, SleepTimer

JOURNAL_MISMATCH_CODE = codes.JOURNAL_MISMATCH


def sleep_timer_id(invocation_id: str, index: int) -> str:
    return f"sleep:{invocation_id}:{index}"


def on_invoker_effect(
    tx: Transaction, now_ms: int, command: InvokerEffect, actions: list[Action]
) -> bool:
    status = tx.status(command.invocation_id)
    if status is None or status.phase != "invoked" or status.attempt != command.attempt:
        return False
    effect = command.effect
    match effect:
        case JournalAppend():
            return _append(tx, status, effect, now_ms, actions)
        case CompleteRun():
            return _complete_run(tx, status, effect, now_ms, actions)
        case End():
            _end(tx, status, now_ms, actions)
            return True
        case Failed():
            _fail(tx, status, effect, now_ms, actions)
            return True
        case Suspended():
            _suspend(tx, status, effect, now_ms, actions)
            return True
        case Pinned(deployment_id=deployment_id):
            if status.deployment_id is not None:
                return False  # pinned already (a repeated record, or moved meanwhile)
            tx.put_status(msgspec.structs.replace(status, deployment_id=deployment_id))
            return True
        case _:
            assert_never(effect)


def _append(
    tx: Transaction,
    status: InvocationStatus,
    effect: JournalAppend,
    now_ms: int,
    actions: list[Action],
) -> bool:
    if effect.index != status.journal_length:
        return False  # a duplicate (index below) or a gap that cannot be applied
    index = effect.index
    if _answered_by_sdk(effect):
        # The SDK answered the read from the eager state and went on: journal its answer as
        # completed before anything else (completion_seq 0, as the SDK counted it).
        tx.put_entry(status.invocation_id, index, JournalEntry(effect.command, effect.completion))
        tx.put_status(msgspec.structs.replace(status, journal_length=index + 1, modified_ms=now_ms))
        return True
    command, completion = _execute(tx, status, effect, now_ms, actions)
    entry = JournalEntry(command)
    tx.put_entry(status.invocation_id, index, entry)
    # Re-read: resolving a promise this invocation itself awaits has completed one of its entries.
    current = tx.status(status.invocation_id) or status
    status = msgspec.structs.replace(current, journal_length=index + 1, modified_ms=now_ms)
    tx.put_status(status)
    if completion is not None:
        lifecycle.complete_entry(tx, status, index, entry, completion, now_ms, actions)
    return True


def _answered_by_sdk(effect: JournalAppend) -> bool:
    """A state read carrying a result of its kind (anything else the store answers)."""
    match effect.command, effect.completion:
        case GetState(), Success() | Void():
            return True
        case GetStateKeys(), StateKeys():
            return True
        case _:
            return False


def _execute(
    tx: Transaction,
    status: InvocationStatus,
    effect: JournalAppend,
    now_ms: int,
    actions: list[Action],
) -> tuple[JournalCommand, Completion | None]:
    """Apply a command's effect; returns the command as stored and its immediate completion."""
    target = status.target
    service, key = target.service, target.key or ""
    writable = target.key is not None and target.handler_kind != "shared"
    command = effect.command
    match command:
        case GetState(key=name):
            value = tx.state_value(service, key, name)
            return command, Void() if value is None else Success(value)
        case GetStateKeys():
            return command, StateKeys(tx.state_names(service, key))
        case SetState(key=name, value=value):
            if writable:
                tx.put_state_value(service, key, name, value)
        case ClearState(key=name):
            if writable:
                tx.delete_state_value(service, key, name)
        case ClearAllState():
            if writable:
                for name in tx.state_names(service, key):
                    tx.delete_state_value(service, key, name)
        case Call() | OneWayCall():
            return _call(tx, status, effect, command, actions)
        case Sleep(wake_up_ms=requested_ms):
            wake_up_ms = clamp_ms(requested_ms)
            timer_id = sleep_timer_id(status.invocation_id, effect.index)
            tx.put_timer(wake_up_ms, timer_id, SleepTimer(status.invocation_id, effect.index))
            actions.append(RegisterTimer(wake_up_ms, timer_id))
        case CompleteAwakeable(awakeable_id=awakeable_id, result=result):
            try:
                owner, owner_index = parse_awakeable_id(awakeable_id)
            except InvalidAwakeableId:
                return command, None  # the SDK validates ids; nothing to deliver
            signal = NotifySignal(owner, owner_index, result)
            lifecycle.send(tx, owner, signal, actions)
        case GetPromise(name=name):
            return command, promises.get_promise(tx, status, effect.index, name)
        case PeekPromise(name=name):
            return command, promises.peek_promise(tx, status, name)
        case CompletePromise(name=name, result=result):
            return command, promises.complete_promise(tx, status, name, result, now_ms, actions)
        case CancelInvocation(invocation_id=target_id):
            if is_invocation_id(target_id):
                lifecycle.send(tx, target_id, Terminate(target_id, "cancel"), actions)
        case Run() | Output() | Input() | Awakeable():
            pass
        case _:
            assert_never(command)
    return command, None


def _call(
    tx: Transaction,
    status: InvocationStatus,
    effect: JournalAppend,
    command: Call | OneWayCall,
    actions: list[Action],
) -> tuple[JournalCommand, Completion | None]:
    """Start the callee through the outbox; a call's result comes back as a response."""
    target = command.target
    resolved = effect.resolved
    if resolved is not None and resolved.target.handler_kind == "workflow" and target.key:
        callee_id = workflow_run_id(target.service, target.key)  # submits (or attaches to) it
    else:
        callee_id = invocation_id_for(
            target.service,
            target.handler,
            target.key,
            command.idempotency_key,
            entropy=call_entropy(status.invocation_id, effect.index),
        )
    stored = msgspec.structs.replace(command, invocation_id=callee_id)
    if resolved is None:
        failure = Failure(404, f"{target.service}/{target.handler} not found")
        return stored, failure if isinstance(command, Call) else None
    is_call = isinstance(command, Call)
    invoke = Invoke(
        invocation_id=callee_id,
        target=resolved.target,
        argument=command.argument,
        headers=command.headers,
        idempotency_key=command.idempotency_key,
        retry_policy=resolved.retry_policy,
        completion_retention_ms=resolved.completion_retention_ms,
        caller=CallerRef(status.invocation_id, effect.index) if is_call else None,
        invoke_at_ms=0 if isinstance(command, Call) else command.invoke_at_ms,
    )
    lifecycle.send(tx, callee_id, invoke, actions)
    actions.append(
        NotifyInvocationId(status.invocation_id, status.attempt, effect.index, callee_id)
    )
    return stored, None


def _complete_run(
    tx: Transaction,
    status: InvocationStatus,
    effect: CompleteRun,
    now_ms: int,
    actions: list[Action],
) -> bool:
    entry = tx.entry(status.invocation_id, effect.index)
    if entry is None or not isinstance(entry.command, Run) or entry.completion is not None:
        return False
    lifecycle.complete_entry(tx, status, effect.index, entry, effect.result, now_ms, actions)
    return True


def _end(tx: Transaction, status: InvocationStatus, now_ms: int, actions: list[Action]) -> None:
    last = tx.entry(status.invocation_id, status.journal_length - 1)
    if last is not None and isinstance(last.command, Output):
        result = last.command.result
    else:
        result = Failure(500, "the handler ended without producing an output")
    lifecycle.complete(tx, status, result, now_ms, actions)


def _fail(
    tx: Transaction,
    status: InvocationStatus,
    effect: Failed,
    now_ms: int,
    actions: list[Action],
) -> None:
    failure = AttemptFailure(status.attempt, effect.code, effect.message)
    retries = status.retry_count + 1
    status = msgspec.structs.replace(status, last_failure=failure, retry_count=retries)
    max_attempts = status.retry_policy.max_attempts
    if not effect.retryable or (max_attempts and retries >= max_attempts):
        lifecycle.complete(tx, status, Failure(effect.code, effect.message), now_ms, actions)
    else:
        lifecycle.schedule_retry(tx, status, now_ms, actions)


def _suspend(
    tx: Transaction,
    status: InvocationStatus,
    effect: Suspended,
    now_ms: int,
    actions: list[Action],
) -> None:
    """Park the invocation until one awaited entry completes (maybe already did)."""
    if not effect.awaiting:
        lifecycle.resume(tx, status, now_ms, actions)  # nothing to wait for: carry on
        return
    for index in effect.awaiting:
        entry = tx.entry(status.invocation_id, index)
        if entry is not None and entry.completion is not None:
            lifecycle.resume(tx, status, now_ms, actions)
            return
    tx.put_status(
        msgspec.structs.replace(
            status, phase="suspended", awaiting=list(effect.awaiting), modified_ms=now_ms
        )
    )
