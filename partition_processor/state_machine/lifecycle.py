"""Starting and finishing invocations: locks, inboxes, responses, retention."""

from __future__ import annotations

import msgspec

from partition_processor.actions import Action, RegisterTimer, RespondToIngress, StartInvocation
from partition_processor.journal import Result
from partition_processor.tables import Transaction
from partition_processor.values import InvocationStatus, PurgeTimer, RetryTimer


def purge_timer_id(invocation_id: str) -> str:
    return f"purge:{invocation_id}"


def retry_timer_id(invocation_id: str, attempt: int) -> str:
    return f"retry:{invocation_id}:{attempt}"


def start(tx: Transaction, status: InvocationStatus, now_ms: int, actions: list[Action]) -> None:
    """Move an invocation to its first attempt and ask the leader to run it."""
    started = msgspec.structs.replace(status, phase="invoked", attempt=1, modified_ms=now_ms)
    tx.put_status(started)
    actions.append(StartInvocation(status.invocation_id, 1))


def schedule_retry(
    tx: Transaction, status: InvocationStatus, now_ms: int, actions: list[Action]
) -> None:
    """Back off after a failed attempt; the retry timer starts the next attempt."""
    wake_ms = now_ms + status.retry_policy.delay_ms(status.attempt)
    timer_id = retry_timer_id(status.invocation_id, status.attempt)
    tx.put_timer(wake_ms, timer_id, RetryTimer(status.invocation_id, status.attempt))
    tx.put_status(msgspec.structs.replace(status, phase="backing_off", modified_ms=now_ms))
    actions.append(RegisterTimer(wake_ms, timer_id))


def complete(
    tx: Transaction,
    status: InvocationStatus,
    result: Result,
    now_ms: int,
    actions: list[Action],
) -> None:
    """Record the result, answer every waiter, keep it for its retention, free the object lock."""
    invocation_id = status.invocation_id
    for sink in status.sinks:
        actions.append(RespondToIngress(sink, invocation_id, result))
    tx.delete_journal(invocation_id, status.journal_length)
    if status.completion_retention_ms > 0:
        wake_ms = now_ms + status.completion_retention_ms
        tx.put_timer(wake_ms, purge_timer_id(invocation_id), PurgeTimer(invocation_id))
        actions.append(RegisterTimer(wake_ms, purge_timer_id(invocation_id)))
        tx.put_status(
            msgspec.structs.replace(
                status,
                phase="completed",
                result=result,
                sinks=[],
                journal_length=0,
                modified_ms=now_ms,
            )
        )
    else:
        tx.delete_status(invocation_id)
    target = status.target
    if target.handler_kind == "exclusive" and target.key is not None:
        release_lock(tx, target.service, target.key, invocation_id, now_ms, actions)


def release_lock(
    tx: Transaction,
    service: str,
    key: str,
    holder: str,
    now_ms: int,
    actions: list[Action],
) -> None:
    """Free the object's lock and hand it to the next invocation in its inbox (FIFO)."""
    if tx.lock_holder(service, key) != holder:
        return
    while (next_id := tx.pop_inbox(service, key)) is not None:
        queued = tx.status(next_id)
        if queued is None or queued.phase != "inboxed":
            continue  # purged or killed while queued
        tx.set_lock(service, key, next_id)
        start(tx, queued, now_ms, actions)
        return
    tx.set_lock(service, key, None)
