"""Starting, suspending, resuming and finishing invocations; completing journal entries."""

from __future__ import annotations

import msgspec

from partition_processor.actions import (
    Action,
    NotifyInvoker,
    RegisterTimer,
    RespondToIngress,
    ShipOutbox,
    StartInvocation,
)
from partition_processor.commands import InvocationResponse
from partition_processor.journal import Completion, JournalEntry, Result
from partition_processor.limits import add_ms
from partition_processor.state_machine.on_patch_state import apply_patch
from partition_processor.tables import Transaction
from partition_processor.values import (
    InvocationStatus,
    OutboxCommand,
    OutboxMessage,
    PurgeTimer,
    QueuedPatch,
    RetryTimer,
)


def purge_timer_id(invocation_id: str) -> str:
    return f"purge:{invocation_id}"


def retry_timer_id(invocation_id: str, attempt: int) -> str:
    return f"retry:{invocation_id}:{attempt}"


def send(tx: Transaction, route: str, command: OutboxCommand, actions: list[Action]) -> None:
    """Queue a record for the partition owning ``route`` (shipped after commit, DESIGN §5)."""
    seq = tx.add_outbox(OutboxMessage(route, command))
    actions.append(ShipOutbox(seq))


def holds_lock(status: InvocationStatus) -> bool:
    """Exclusive handlers and a workflow's run hold their object's lock while they run. (A run
    is alone on its key anyway; its lock keeps a state patch from landing under it.)"""
    target = status.target
    return target.handler_kind in ("exclusive", "workflow") and target.key is not None


def admit(tx: Transaction, status: InvocationStatus, now_ms: int, actions: list[Action]) -> None:
    """Start an invocation, or queue it behind the holder of its object's lock."""
    target = status.target
    if holds_lock(status) and target.key is not None:
        lock = tx.lock(target.service, target.key)
        if lock is not None:
            tx.put_status(msgspec.structs.replace(status, phase="inboxed", modified_ms=now_ms))
            tx.enqueue_inbox(target.service, target.key, status.invocation_id, lock)
            return
        tx.set_lock(target.service, target.key, status.invocation_id)
    start(tx, status, now_ms, actions)


def start(tx: Transaction, status: InvocationStatus, now_ms: int, actions: list[Action]) -> None:
    """Move an invocation to its first attempt and ask the leader to run it."""
    started = msgspec.structs.replace(status, phase="invoked", attempt=1, modified_ms=now_ms)
    tx.put_status(started)
    actions.append(StartInvocation(status.invocation_id, 1))


def resume(
    tx: Transaction, status: InvocationStatus, now_ms: int, actions: list[Action]
) -> InvocationStatus:
    """A new attempt that replays the journal (after a suspension or a backoff)."""
    attempt = status.attempt + 1
    resumed = msgspec.structs.replace(
        status, phase="invoked", attempt=attempt, awaiting=[], modified_ms=now_ms
    )
    tx.put_status(resumed)
    actions.append(StartInvocation(status.invocation_id, attempt))
    return resumed


def complete_entry(
    tx: Transaction,
    status: InvocationStatus,
    index: int,
    entry: JournalEntry,
    completion: Completion,
    now_ms: int,
    actions: list[Action],
) -> InvocationStatus:
    """Record the completion of entry ``index`` and deliver it to whoever waits for it."""
    seq = status.completions + 1
    tx.put_entry(
        status.invocation_id,
        index,
        JournalEntry(entry.command, completion, completion_seq=seq),
    )
    status = msgspec.structs.replace(status, completions=seq, modified_ms=now_ms)
    if status.phase == "suspended" and index in status.awaiting:
        return resume(tx, status, now_ms, actions)
    tx.put_status(status)
    if status.phase == "invoked":
        actions.append(NotifyInvoker(status.invocation_id, status.attempt, index, completion, seq))
    return status


def schedule_retry(
    tx: Transaction, status: InvocationStatus, now_ms: int, actions: list[Action]
) -> None:
    """Back off after a failed attempt; the retry timer starts the next attempt."""
    wake_ms = add_ms(now_ms, status.retry_policy.delay_ms(status.retry_count))
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
        actions.append(RespondToIngress(sink, invocation_id, result, target=status.target))
    for caller in status.callers:
        response = InvocationResponse(caller.invocation_id, caller.index, result)
        send(tx, caller.invocation_id, response, actions)
    tx.delete_journal(invocation_id, status.journal_length)
    if status.completion_retention_ms > 0:
        completed = msgspec.structs.replace(
            status,
            phase="completed",
            result=result,
            sinks=[],
            callers=[],
            awaiting=[],
            journal_length=0,
            modified_ms=now_ms,
        )
        wake_ms, timer_id = retention_timer(completed)
        tx.put_timer(wake_ms, timer_id, PurgeTimer(invocation_id))
        actions.append(RegisterTimer(wake_ms, timer_id))
        tx.put_status(completed)
    else:
        forget(tx, status)
    target = status.target
    if holds_lock(status) and target.key is not None:
        release_lock(tx, target.service, target.key, invocation_id, now_ms, actions)


def retention_timer(completed: InvocationStatus) -> tuple[int, str]:
    """The wake time and id of the timer that purges a completed invocation.

    A completed status is never written again, so its ``modified_ms`` is its completion time.
    """
    wake_ms = add_ms(completed.modified_ms, completed.completion_retention_ms)
    return wake_ms, purge_timer_id(completed.invocation_id)


def forget(tx: Transaction, status: InvocationStatus) -> None:
    """Delete a finished invocation; a workflow run takes its state and promises with it."""
    tx.delete_status(status.invocation_id)
    tx.delete_journal(status.invocation_id, status.journal_length)
    target = status.target
    if target.handler_kind == "workflow" and target.key is not None:
        tx.delete_object(target.service, target.key)


def release_lock(
    tx: Transaction,
    service: str,
    key: str,
    holder: str,
    now_ms: int,
    actions: list[Action],
) -> None:
    """Free the object's lock and hand it to the next invocation in its inbox (FIFO). State
    patches queued before that invocation apply now, in their order."""
    lock = tx.lock(service, key)
    if lock is None or lock.holder != holder:
        return
    head, tail = lock.inbox_head, lock.inbox_tail
    # (A known tail at or below the head: nothing is queued, no scan.)
    while (tail < 0 or head < tail) and (popped := tx.pop_inbox(service, key, head)) is not None:
        next_id, seq = popped
        head = seq + 1
        if isinstance(next_id, QueuedPatch):
            apply_patch(tx, service, key, next_id, now_ms, actions)
            continue
        queued = tx.status(next_id)
        if queued is None or queued.phase != "inboxed":
            continue  # purged or killed while queued
        tx.set_lock(service, key, next_id, head, tail)
        start(tx, queued, now_ms, actions)
        return
    tx.set_lock(service, key, None)
