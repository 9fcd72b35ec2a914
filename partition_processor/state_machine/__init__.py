"""The pure state machine: ``apply(tx, envelope, actions)``.

``apply`` reads the partition through ``tx``, writes only into ``tx`` and appends actions for the
leader. It reads no clock (time is ``envelope.timestamp_ms``), draws no randomness and does no
I/O, so followers, restarts and tests replaying the same log reach the same state.
"""

from __future__ import annotations

from typing import assert_never

from partition_processor.actions import Action
from partition_processor.commands import (
    AnnounceLeader,
    Envelope,
    Invoke,
    InvokerEffect,
    LeaderDedup,
    TimerFired,
)
from partition_processor.state_machine.on_announce_leader import on_announce_leader
from partition_processor.state_machine.on_invoke import on_invoke
from partition_processor.state_machine.on_invoker_effect import on_invoker_effect
from partition_processor.state_machine.on_timer_fired import on_timer_fired
from partition_processor.tables import Transaction


def apply(tx: Transaction, envelope: Envelope, actions: list[Action]) -> bool:
    """Apply one record. Returns False when the record was dropped (fenced or duplicate)."""
    dedup = envelope.dedup
    if isinstance(dedup, LeaderDedup) and dedup.epoch != tx.fsm.leader_epoch:
        return False  # a deposed leader's late proposal (DESIGN §5, fencing)
    command = envelope.command
    match command:
        case Invoke():
            return on_invoke(tx, envelope.timestamp_ms, command, actions)
        case InvokerEffect():
            return on_invoker_effect(tx, envelope.timestamp_ms, command, actions)
        case TimerFired():
            return on_timer_fired(tx, envelope.timestamp_ms, command, actions)
        case AnnounceLeader():
            return on_announce_leader(tx, command)
        case _:
            assert_never(command)
