"""Workflow durable promises: await, peek, resolve / reject (once)."""

from __future__ import annotations

from partition_processor.actions import Action
from partition_processor.commands import CallerRef
from partition_processor.journal import Completion, Failure, Result, Void
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction
from partition_processor.values import InvocationStatus, PromiseValue

ALREADY_COMPLETED = 409


def _owner(status: InvocationStatus) -> tuple[str, str]:
    return status.target.service, status.target.key or ""


def get_promise(
    tx: Transaction, status: InvocationStatus, index: int, name: str
) -> Completion | None:
    """The result if the promise is completed; else register the entry as a waiter."""
    service, key = _owner(status)
    promise = tx.promise(service, key, name) or PromiseValue()
    if promise.result is not None:
        return promise.result
    waiter = CallerRef(status.invocation_id, index)
    tx.put_promise(service, key, name, PromiseValue(None, [*promise.waiters, waiter]))
    return None


def peek_promise(tx: Transaction, status: InvocationStatus, name: str) -> Completion:
    service, key = _owner(status)
    promise = tx.promise(service, key, name)
    return promise.result if promise is not None and promise.result is not None else Void()


def complete_promise(
    tx: Transaction,
    status: InvocationStatus,
    name: str,
    result: Result,
    now_ms: int,
    actions: list[Action],
) -> Completion:
    """Complete the promise once and wake its waiters; a second completion fails with 409."""
    service, key = _owner(status)
    promise = tx.promise(service, key, name) or PromiseValue()
    if promise.result is not None:
        return Failure(ALREADY_COMPLETED, f"promise {name!r} is already completed")
    tx.put_promise(service, key, name, PromiseValue(result, []))
    for waiter in promise.waiters:
        waiting = tx.status(waiter.invocation_id)
        entry = tx.entry(waiter.invocation_id, waiter.index)
        if waiting is None or waiting.phase == "completed" or entry is None:
            continue
        if entry.completion is None:
            lifecycle.complete_entry(tx, waiting, waiter.index, entry, result, now_ms, actions)
    return Void()
