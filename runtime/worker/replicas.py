"""The partitions this node applies: one ``PartitionWorker`` each, started and stopped as the
cluster's placement changes (DESIGN §8; ``runtime.placement``).

A placement is followed by its difference from the last one, never by starting over: a partition
whose leader stays keeps its worker, its epoch and its running attempts. Newly led -> claim (a
higher epoch is announced once caught up); no longer led -> hand over (keep leading until the
new leader's announcement is applied, then apply as a standby); a new replica -> a worker
(which restores from a snapshot when its local store is absent or below the log's start, then
replays the suffix); no longer a replica -> its worker stops (its rows stay in the store; a
later worker continues from them, or restores).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from runtime.metrics import PARTITIONS_APPLIED
from runtime.placement import Placement
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.worker.partition import PartitionWorker

log = logging.getLogger(__name__)

WorkerFactory = Callable[[int, bool], PartitionWorker]


class ReplicaWorkers:
    def __init__(self, make: WorkerFactory, supervisor: Supervisor, node_id: str) -> None:
        self._make = make
        self._supervisor = supervisor
        self._node_id = node_id
        self.by_partition: dict[int, PartitionWorker] = {}
        self._tasks: dict[int, SupervisedTask] = {}
        self.placement: Placement | None = None

    def start(self, partition: int, *, owned: bool) -> PartitionWorker:
        worker = self._make(partition, owned)
        self.by_partition[partition] = worker
        self._tasks[partition] = self._supervisor.spawn(
            f"partition-{partition}/apply", worker.run, partition=partition
        )
        PARTITIONS_APPLIED.set(len(self.by_partition))
        return worker

    async def stop(self, partition: int) -> None:
        self.by_partition.pop(partition, None)
        task = self._tasks.pop(partition, None)
        PARTITIONS_APPLIED.set(len(self.by_partition))
        if task is not None:
            await task.stop()  # its run() steps down and stops the claim on the way out

    async def follow(self, placement: Placement) -> list[PartitionWorker]:
        """Carry out ``placement``'s difference from the current one; returns new workers."""
        mine = placement.replicas_of(self._node_id)
        led = placement.led_by(self._node_id)
        for partition in sorted(set(self.by_partition) - mine):
            await self.stop(partition)
        for partition, worker in sorted(self.by_partition.items()):
            if partition not in led and worker.owned:
                # Stays a standby: it leads on until the new leader, once caught up, announces
                # (no unled gap while a joiner restores and replays).
                worker.hand_over()
            elif partition in led and not worker.owned:
                worker.claim()
        started = [
            self.start(partition, owned=partition in led)
            for partition in sorted(mine - set(self.by_partition))
        ]
        previous = self.placement
        self.placement = placement
        log.info(
            "cluster: placement %d: applying %s, leading %s (was generation %s)",
            placement.generation,
            sorted(mine),
            sorted(led),
            previous.generation if previous is not None else None,
        )
        return started

    def hand_over_all(self) -> None:
        """A rebalance began: lead on, but claim nothing back until the next placement says
        which partitions are still this node's (it claims them again then: a partition it still
        leads keeps its epoch)."""
        for worker in self.by_partition.values():
            if worker.owned:
                worker.hand_over()

    def applies(self, partition: int) -> bool:
        return partition in self.by_partition

    def owns(self, partition: int) -> bool:
        worker = self.by_partition.get(partition)
        return worker is not None and (worker.owned or worker.is_leader)

    def leading(self) -> list[int]:
        return sorted(p for p, w in self.by_partition.items() if w.is_leader)

    def applied(self, partitions: int) -> list[int]:
        """Applied position per partition (-1 where this node has no worker)."""
        return [
            w.processor.fsm.applied_lsn if (w := self.by_partition.get(p)) is not None else -1
            for p in range(partitions)
        ]

    def local_view(self) -> dict[int, dict[str, int | bool]]:
        """Per applied partition: its applied position, the epoch it saw, whether this node
        leads it (what ``GET /cluster`` gathers from every node)."""
        view: dict[int, dict[str, int | bool]] = {}
        for partition, worker in sorted(self.by_partition.items()):
            fsm = worker.processor.fsm
            view[partition] = {
                "applied": fsm.applied_lsn,
                "epoch": fsm.leader_epoch,
                "leading": worker.is_leader,
            }
        return view
