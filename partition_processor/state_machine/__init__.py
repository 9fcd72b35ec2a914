"""The pure state machine: ``apply(tx, envelope, actions)``.

``apply`` reads the partition through ``tx``, writes only into ``tx`` and appends actions for the
leader. It reads no clock (time is ``envelope.timestamp_ms``), draws no randomness and does no
I/O, so followers, restarts and tests replaying the same log reach the same state.
"""

from __future__ import annotations

import enum
from typing import assert_never

from partition_processor.actions import Action
from partition_processor.commands import (
    AnnounceLeader,
    Attach,
    DeploymentGone,
    Envelope,
    InvocationResponse,
    Invoke,
    InvokerEffect,
    LeaderDedup,
    MoveDeployment,
    NotifySignal,
    PatchState,
    ProducerDedup,
    Purge,
    Terminate,
    TimerFired,
    TruncateOutbox,
)
from partition_processor.state_machine.on_announce_leader import on_announce_leader
from partition_processor.state_machine.on_attach import on_attach
from partition_processor.state_machine.on_invocation_response import on_invocation_response
from partition_processor.state_machine.on_invoke import on_invoke
from partition_processor.state_machine.on_invoker_effect import on_invoker_effect
from partition_processor.state_machine.on_notify_signal import on_notify_signal
from partition_processor.state_machine.on_patch_state import on_patch_state
from partition_processor.state_machine.on_purge import on_purge
from partition_processor.state_machine.on_terminate import on_terminate
from partition_processor.state_machine.on_timer_fired import on_timer_fired
from partition_processor.state_machine.on_versions import on_deployment_gone, on_move
from partition_processor.tables import Transaction


class Drop(enum.Enum):
    """Why a record changed nothing (counted per batch, so tests can see each guard act)."""

    STALE_EPOCH = "stale_epoch"  # a deposed leader's late proposal (DESIGN §5, fencing)
    PRODUCER_REPEAT = "producer_repeat"  # an outbox message shipped again
    NO_EFFECT = "no_effect"  # its command found nothing to do (a duplicate, a stale attempt…)


def apply(tx: Transaction, envelope: Envelope, actions: list[Action]) -> Drop | None:
    """Apply one record. Returns why it was dropped, or None when it was applied."""
    dedup = envelope.dedup
    match dedup:
        case LeaderDedup(epoch=epoch) if epoch != tx.fsm.leader_epoch:
            return Drop.STALE_EPOCH
        case ProducerDedup(producer_id=producer, seq=seq):
            if seq <= tx.producer_seq(producer):
                return Drop.PRODUCER_REPEAT  # after a retry or a leader change
            tx.set_producer_seq(producer, seq)
    return None if _dispatch(tx, envelope, actions) else Drop.NO_EFFECT


def _dispatch(tx: Transaction, envelope: Envelope, actions: list[Action]) -> bool:
    command = envelope.command
    now_ms = envelope.timestamp_ms
    match command:
        case Invoke():
            return on_invoke(tx, now_ms, command, actions)
        case InvokerEffect():
            return on_invoker_effect(tx, now_ms, command, actions)
        case TimerFired():
            return on_timer_fired(tx, now_ms, command, actions)
        case AnnounceLeader():
            return on_announce_leader(tx, command)
        case InvocationResponse():
            return on_invocation_response(tx, now_ms, command, actions)
        case NotifySignal():
            return on_notify_signal(tx, now_ms, command, actions)
        case TruncateOutbox(upto_seq=upto_seq):
            tx.truncate_outbox(upto_seq)
            return True
        case Attach():
            return on_attach(tx, command, actions)
        case Terminate():
            return on_terminate(tx, now_ms, command, actions)
        case Purge():
            return on_purge(tx, command, actions)
        case MoveDeployment():
            return on_move(tx, now_ms, command, actions)
        case DeploymentGone():
            return on_deployment_gone(tx, now_ms, command, actions)
        case PatchState():
            return on_patch_state(tx, now_ms, command, actions)
        case _:
            assert_never(command)
