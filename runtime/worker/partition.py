"""Runs one partition on this node: follow the log, apply batches, lead when elected.

The loop (DESIGN §5): read records from ``applied_lsn + 1``, apply each batch through the pure
processor (one RocksDB write batch with ``applied_lsn``), and only then, only as leader, execute
the batch's actions. Leadership: catch up to the tail, append ``AnnounceLeader(epoch + 1)``, and
lead from the moment that announcement is applied until a newer one is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import assert_never

from partition_processor.actions import (
    AbortInvocation,
    Action,
    CancelInvocation,
    NotifyInvocationId,
    NotifyInvoker,
    RegisterTimer,
    RespondToIngress,
    ShipOutbox,
    StartInvocation,
)
from partition_processor.commands import AnnounceLeader, Envelope, LeaderSource, encode_envelope
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.tables import Store
from runtime.clock import now_ms
from runtime.invoker.channels import ChannelPool
from runtime.invoker.invoker import PartitionInvoker
from runtime.log import Log
from runtime.metadata import Registry
from runtime.metrics import RECORDS_APPLIED
from runtime.snapshots.manager import Snapshotter, restore_partition
from runtime.worker.outbox import OutboxShipper
from runtime.worker.proposer import LeaderProposer
from runtime.worker.timers import TimerService

log = logging.getLogger(__name__)

Responder = Callable[[RespondToIngress], None]


class _Leadership:
    """What exists only while this node leads the partition."""

    def __init__(
        self,
        proposer: LeaderProposer,
        invoker: PartitionInvoker,
        outbox: OutboxShipper,
        timers: TimerService,
    ) -> None:
        self.proposer = proposer
        self.invoker = invoker
        self.outbox = outbox
        self.timers = timers

    async def stop(self) -> None:
        await self.invoker.stop()
        await self.timers.stop()
        await self.outbox.stop()


class PartitionWorker:
    def __init__(
        self,
        partition: int,
        *,
        log_: Log,
        store: Store,
        node_id: str,
        registry: Registry,
        channels: ChannelPool,
        respond: Responder,
        owned: bool = True,
        snapshots: Snapshotter | None = None,
    ) -> None:
        self.partition = partition
        self._log = log_
        self._store = store
        self._node_id = node_id
        self._registry = registry
        self._channels = channels
        self._respond = respond
        self.processor = PartitionProcessor(store, partition, node_id)
        self._leadership: _Leadership | None = None
        # Set once leading (a single node waits for it before it says it is ready).
        self.caught_up = asyncio.Event()
        # Set once applied up to the tail seen at start (a cluster node waits for this).
        self.synced = asyncio.Event()
        # Ownership: a single node owns every partition; in a cluster the group assignment
        # decides. Owning means announcing a new epoch once caught up, and again whenever
        # another node's announcement wins while this node still owns the partition.
        self._owned = owned
        self._announced_epoch = 0
        self._claim = asyncio.Event()
        self._progress = asyncio.Event()
        self._snapshots = snapshots

    @property
    def is_leader(self) -> bool:
        return self._leadership is not None

    def claim(self) -> None:
        """Lead this partition: announce a new epoch once applied up to the log's tail."""
        self._owned = True
        self._claim.set()

    async def release(self) -> None:
        """Stop leading (another node is taking the partition over); keep applying."""
        self._owned = False
        self._claim.clear()
        await self._step_down()

    async def run(self) -> None:
        if self._owned:
            self._claim.set()  # (again, when the supervisor restarts a failed worker)
        claimer = asyncio.create_task(self._claim_when_caught_up())
        try:
            await self._run()
        finally:
            claimer.cancel()
            await asyncio.gather(claimer, return_exceptions=True)
            await self._step_down()

    async def _claim_when_caught_up(self) -> None:
        while True:
            await self._claim.wait()
            self._claim.clear()
            if not self._owned or self._leadership is not None:
                continue
            tail = await self._log.tail(self.partition)
            while self.processor.fsm.applied_lsn < tail - 1:
                self._progress.clear()
                await self._progress.wait()
            if self._owned and self._leadership is None:
                await self._announce()

    async def _restore(self, snapshots: Snapshotter) -> None:
        """Before applying: a store with no (or too old) state starts from a snapshot."""
        header = await restore_partition(
            self._store,
            snapshots.repository,
            self.partition,
            log_start=await self._log.first_lsn(self.partition),
            log_end=await self._log.tail(self.partition),
            partitions=self._log.partitions,
        )
        if header is not None:
            snapshots.note_position(self.partition, header.applied_lsn)
            # The store jumped ahead: a claim waiting to be caught up must look again (the
            # snapshot may already be at the tail, so no batch would wake it).
            self._progress.set()

    async def _run(self) -> None:
        if self._snapshots is not None:
            await self._restore(self._snapshots)
        applied = self.processor.fsm.applied_lsn
        tail = await self._log.tail(self.partition)
        if applied >= tail - 1:
            self.synced.set()
        async for batch in self._log.read(self.partition, applied + 1):
            outcome = self.processor.apply_batch([LogEntry(r.lsn, r.payload) for r in batch])
            RECORDS_APPLIED.inc(len(batch))
            self._progress.set()
            if outcome.applied_lsn >= tail - 1:
                self.synced.set()
            if outcome.is_leader and self._leads_at() != outcome.leader_epoch:
                # Elected, or re-elected at a newer epoch (this node announced again): records
                # proposed with the old epoch would be dropped, so lead afresh at the new one.
                await self._step_down()
                self._become_leader(outcome.leader_epoch)
                self.caught_up.set()
            elif not outcome.is_leader and self._leadership is not None:
                log.warning(
                    "partition %d: deposed by epoch %d", self.partition, outcome.leader_epoch
                )
                await self._step_down()
            if (
                self._owned
                and not outcome.is_leader
                and outcome.leader_epoch >= self._announced_epoch
            ):
                self._claim.set()  # owned, but another announcement won (or none was made)
            if self._leadership is not None:
                for action in outcome.actions:
                    self._execute(self._leadership, action)
            if self._snapshots is not None:
                self._snapshots.after_batch(self.partition, outcome.applied_lsn, self.is_leader)

    def _leads_at(self) -> int | None:
        return self._leadership.proposer.epoch if self._leadership is not None else None

    async def _announce(self) -> None:
        epoch = self.processor.fsm.leader_epoch + 1
        self._announced_epoch = epoch
        source = LeaderSource(self.partition, epoch, self._node_id)
        record = Envelope(source, now_ms(), AnnounceLeader(epoch, self._node_id))
        await self._log.append(self.partition, [encode_envelope(record)])

    def _become_leader(self, epoch: int) -> None:
        log.info("partition %d: leader at epoch %d", self.partition, epoch)
        proposer = LeaderProposer(self._log, self.partition, epoch, self._node_id)
        invoker = PartitionInvoker(
            self.partition, self._store, self._registry, self._channels, proposer
        )
        outbox = OutboxShipper(self._log, self.partition, self._store, proposer)
        timers = TimerService(proposer, self.processor.pending_timers)
        leadership = _Leadership(proposer, invoker, outbox, timers)
        self._leadership = leadership
        timers.start()
        outbox.start()
        for start in self.processor.invocations_to_resume():
            invoker.start(start)

    async def _step_down(self) -> None:
        leadership, self._leadership = self._leadership, None
        if leadership is not None:
            await leadership.stop()

    def _execute(self, leadership: _Leadership, action: Action) -> None:
        match action:
            case StartInvocation():
                leadership.invoker.start(action)
            case NotifyInvoker():
                leadership.invoker.notify(action)
            case NotifyInvocationId():
                leadership.invoker.notify_invocation_id(action)
            case ShipOutbox():
                leadership.outbox.wake()
            case CancelInvocation():
                leadership.invoker.cancel(action)
            case AbortInvocation():
                leadership.invoker.abort(action)
            case RespondToIngress():
                self._respond(action)
            case RegisterTimer(wake_ms=wake_ms, timer_id=timer_id):
                leadership.timers.register(wake_ms, timer_id)
            case _:
                assert_never(action)
