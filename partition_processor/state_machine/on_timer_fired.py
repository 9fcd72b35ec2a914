"""``TimerFired``: retries, sleeps, delayed invocations, retention purges.

Firing twice is harmless: applying the first firing deletes the row, the second finds nothing.
"""

from __future__ import annotations

from typing import assert_never

from partition_processor.actions import Action
from partition_processor.commands import TimerFired
from partition_processor.journal import Sleep, Void
from partition_processor.state_machine import lifecycle
from partition_processor.tables import Transaction
from partition_processor.values import DelayedInvokeTimer, PurgeTimer, RetryTimer, SleepTimer


def on_timer_fired(
    tx: Transaction, now_ms: int, command: TimerFired, actions: list[Action]
) -> bool:
    timer = tx.timer(command.wake_ms, command.timer_id)
    if timer is None:
        return False
    tx.delete_timer(command.wake_ms, command.timer_id)
    match timer:
        case RetryTimer(invocation_id=invocation_id, attempt=attempt):
            status = tx.status(invocation_id)
            if status is not None and status.phase == "backing_off" and status.attempt == attempt:
                lifecycle.resume(tx, status, now_ms, actions)
        case SleepTimer(invocation_id=invocation_id, index=index):
            status = tx.status(invocation_id)
            entry = tx.entry(invocation_id, index)
            if (
                status is not None
                and entry is not None
                and isinstance(entry.command, Sleep)
                and entry.completion is None
            ):
                lifecycle.complete_entry(tx, status, index, entry, Void(), now_ms, actions)
        case DelayedInvokeTimer(invocation_id=invocation_id):
            status = tx.status(invocation_id)
            if status is not None and status.phase == "scheduled":
                lifecycle.admit(tx, status, now_ms, actions)
        case PurgeTimer(invocation_id=invocation_id):
            status = tx.status(invocation_id)
            if status is not None and status.phase == "completed":
                lifecycle.forget(tx, status)
        case _:
            assert_never(timer)
    return True
