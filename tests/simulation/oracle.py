"""The simulation's oracle: what apply must do with each appended record, worked out from the
log alone (the fencing and dedup rules of DESIGN §5), to compare with what the processor did."""

from __future__ import annotations

from dataclasses import dataclass, field

from partition_processor.commands import (
    AnnounceLeader,
    CompleteRun,
    Failed,
    Invoke,
    InvokerEffect,
    LeaderDedup,
    PatchState,
    ProducerDedup,
    Suspended,
    decode_envelope,
)
from partition_processor.journal import Completion

PARTITIONS = 3  # the number of partitions of the simulated log


@dataclass
class Oracle:
    """What apply must do with the records appended, worked out independently of it."""

    epochs: list[int] = field(default_factory=lambda: [0] * PARTITIONS)  # as the log decides
    producer_seqs: dict[tuple[int, str], int] = field(default_factory=dict)
    stale_epoch: int = 0  # leader records whose epoch is not the partition's at their position
    producer_repeats: int = 0  # outbox messages whose seq was appended before
    run_results: dict[tuple[str, int], Completion] = field(default_factory=dict)
    # The attempt whose effects count, per invocation: one that failed or suspended is over
    # (the next is one higher), and a shell may still propose for it (it learns that late).
    attempts: dict[str, int] = field(default_factory=dict)
    # Per virtual object (service, key): the exclusive invocations and state patches that reach
    # it, in log order (each once: a repeated invocation or patch id is a copy). The object's inbox
    # runs them in this order, so the object's state follows from this list alone. (A delayed
    # invocation queues when its timer fires, not here: the patched objects get none.)
    object_queues: dict[tuple[str, str], list[Invoke | PatchState]] = field(default_factory=dict)
    invoked: set[str] = field(default_factory=set)
    patch_ids: set[str] = field(default_factory=set)  # a patch applies once, however often logged

    def see(self, partition: int, payload: bytes) -> None:
        envelope = decode_envelope(payload)
        command, dedup = envelope.command, envelope.dedup
        if isinstance(command, AnnounceLeader) and command.epoch > self.epochs[partition]:
            self.epochs[partition] = command.epoch  # the first announcement of a higher epoch
        if isinstance(dedup, LeaderDedup) and dedup.epoch != self.epochs[partition]:
            self.stale_epoch += 1
            return
        if isinstance(dedup, ProducerDedup):
            key = (partition, dedup.producer_id)
            if dedup.seq <= self.producer_seqs.get(key, 0):
                self.producer_repeats += 1
                return
            self.producer_seqs[key] = dedup.seq
        if isinstance(command, InvokerEffect):
            self._see_effect(command)
        elif isinstance(command, PatchState) and command.patch_id not in self.patch_ids:
            # (The simulated time stays far inside the processor's retention of patch ids.)
            self.patch_ids.add(command.patch_id)
            self.object_queues.setdefault((command.service, command.key), []).append(command)
        elif isinstance(command, Invoke) and command.invocation_id not in self.invoked:
            self.invoked.add(command.invocation_id)
            target = command.target
            if target.key is not None and target.handler_kind == "exclusive":
                queue = self.object_queues.setdefault((target.service, target.key), [])
                queue.append(command)

    def _see_effect(self, command: InvokerEffect) -> None:
        attempt = self.attempts.setdefault(command.invocation_id, 1)
        if command.attempt != attempt:
            return
        effect = command.effect
        if isinstance(effect, CompleteRun):
            # The first admitted result of a step is the one its journal keeps.
            run = (command.invocation_id, effect.index)
            self.run_results.setdefault(run, effect.result)
        elif isinstance(effect, Failed | Suspended):
            self.attempts[command.invocation_id] = attempt + 1
