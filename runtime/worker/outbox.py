"""The leader's outbox shipper: delivers outbox rows to their partitions (DESIGN §5).

Each message is appended to its target partition with ``Producer("partition-<p>", seq)``; the
receiver drops sequences it has seen, so shipping again after a crash or a leader change is
harmless (at-least-once shipping + idempotent apply = exactly once). Shipped rows are then
dropped with a ``TruncateOutbox`` record.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from partition_processor.commands import (
    Envelope,
    PartitionSource,
    ProducerDedup,
    TruncateOutbox,
    encode_envelope,
)
from partition_processor.ids import parse_partition_key, partition_of
from partition_processor.tables import KeyValueReader, read_outbox
from runtime.clock import now_ms
from runtime.crashpoints import crash_point
from runtime.faults import fault_point
from runtime.log import Log
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.worker.proposer import LeaderProposer

log = logging.getLogger(__name__)


def producer_id(partition: int) -> str:
    return f"partition-{partition}"


class OutboxShipper:
    def __init__(
        self, log_: Log, partition: int, store: KeyValueReader, proposer: LeaderProposer
    ) -> None:
        self._log = log_
        self._partition = partition
        self._store = store
        self._proposer = proposer
        self._wakeup = asyncio.Event()
        self._shipped_upto = 0
        self._task: SupervisedTask | None = None

    def start(self, supervisor: Supervisor) -> None:
        self._task = supervisor.spawn(
            f"partition-{self._partition}/outbox", self._run, partition=self._partition
        )

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self) -> None:
        if self._task is not None:
            await self._task.stop()
            self._task = None

    async def _run(self) -> None:
        # Ship whatever a previous leader (or this task before it failed) left behind.
        self._wakeup.set()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # A failure (the log refusing an append, too) ends the task: the supervisor reports
            # it in the node's health and starts it again after a backoff.
            await self._ship_pending()

    async def _ship_pending(self) -> None:
        rows = [
            (seq, m)
            for seq, m in read_outbox(self._store, self._partition)
            if seq > self._shipped_upto
        ]
        if not rows:
            return
        fault_point("outbox.ship")
        source = PartitionSource(self._partition)
        producer = producer_id(self._partition)
        timestamp = now_ms()
        by_target: dict[int, list[bytes]] = defaultdict(list)
        for seq, message in rows:
            target = partition_of(parse_partition_key(message.route), self._log.partitions)
            envelope = Envelope(source, timestamp, message.command, ProducerDedup(producer, seq))
            by_target[target].append(encode_envelope(envelope))
        crash_point("outbox.before_ship")  # the rows are committed, not yet delivered
        await asyncio.gather(*(self._log.append(t, records) for t, records in by_target.items()))
        crash_point("outbox.after_ship")  # delivered, not yet truncated: shipped again
        self._shipped_upto = rows[-1][0]
        await self._proposer.propose([TruncateOutbox(self._shipped_upto)])
