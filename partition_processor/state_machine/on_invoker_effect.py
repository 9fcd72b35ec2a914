"""``InvokerEffect``: journal entries, run results, the end or failure of an attempt.

Every effect names its attempt; effects of any attempt but the current one are dropped, and an
entry is appended only at the journal's current length, so a duplicated or late record never
changes anything twice.
"""

from __future__ import annotations

from typing import assert_never

import msgspec

from partition_processor.actions import Action, NotifyInvoker
from partition_processor.commands import CompleteRun, End, Failed, InvokerEffect, JournalAppend
from partition_processor.journal import (
    ClearAllState,
    ClearState,
    Completion,
    Failure,
    GetState,
    GetStateKeys,
    Input,
    JournalCommand,
    JournalEntry,
    Output,
    Run,
    SetState,
    StateKeys,
    Success,
    Void,
)
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction
from partition_processor.values import AttemptFailure, InvocationStatus

JOURNAL_MISMATCH_CODE = 570


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
            return _complete_run(tx, status, effect, actions)
        case End():
            _end(tx, status, now_ms, actions)
            return True
        case Failed():
            _fail(tx, status, effect, now_ms, actions)
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
    completion = _execute(tx, status, effect.command)
    tx.put_entry(status.invocation_id, effect.index, JournalEntry(effect.command, completion))
    tx.put_status(
        msgspec.structs.replace(status, journal_length=effect.index + 1, modified_ms=now_ms)
    )
    if completion is not None:
        actions.append(
            NotifyInvoker(status.invocation_id, status.attempt, effect.index, completion)
        )
    return True


def _execute(
    tx: Transaction, status: InvocationStatus, command: JournalCommand
) -> Completion | None:
    """Apply a command's effect on state and return its immediate completion, if it has one."""
    target = status.target
    service, key = target.service, target.key or ""
    writable = target.key is not None and target.handler_kind != "shared"
    match command:
        case GetState(key=name):
            value = tx.state_value(service, key, name)
            return Void() if value is None else Success(value)
        case GetStateKeys():
            return StateKeys(tx.state_names(service, key))
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
        case Run() | Output() | Input():
            pass
        case _:
            assert_never(command)
    return None


def _complete_run(
    tx: Transaction, status: InvocationStatus, effect: CompleteRun, actions: list[Action]
) -> bool:
    entry = tx.entry(status.invocation_id, effect.index)
    if entry is None or not isinstance(entry.command, Run) or entry.completion is not None:
        return False
    tx.put_entry(status.invocation_id, effect.index, JournalEntry(entry.command, effect.result))
    actions.append(NotifyInvoker(status.invocation_id, status.attempt, effect.index, effect.result))
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
    status = msgspec.structs.replace(status, last_failure=failure)
    max_attempts = status.retry_policy.max_attempts
    if not effect.retryable or (max_attempts and status.attempt >= max_attempts):
        lifecycle.complete(tx, status, Failure(effect.code, effect.message), now_ms, actions)
    else:
        lifecycle.schedule_retry(tx, status, now_ms, actions)
