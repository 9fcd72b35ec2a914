"""``TimerFired``: retries and retention purges. Firing twice is harmless: the row is gone."""

from __future__ import annotations

import msgspec

from partition_processor.actions import Action, StartInvocation
from partition_processor.commands import TimerFired
from partition_processor.tables import Transaction
from partition_processor.values import PurgeTimer, RetryTimer


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
            if status is None or status.phase != "backing_off" or status.attempt != attempt:
                return True
            next_attempt = attempt + 1
            tx.put_status(
                msgspec.structs.replace(
                    status, phase="invoked", attempt=next_attempt, modified_ms=now_ms
                )
            )
            actions.append(StartInvocation(invocation_id, next_attempt))
        case PurgeTimer(invocation_id=invocation_id):
            status = tx.status(invocation_id)
            if status is not None and status.phase == "completed":
                tx.delete_status(invocation_id)
    return True
