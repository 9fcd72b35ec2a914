"""Runs one partition on this node: follow the log, apply batches, lead when elected.

The loop (DESIGN §5): read records from ``applied_lsn + 1``, apply each batch through the pure
processor (one RocksDB write batch with ``applied_lsn``), and only then hand the outcome to the
sans-I/O leader shell (``runtime.worker.leader``), whose commands this driver carries out
against the real log, clock and invoker. Its tasks run under the node's supervisor (logged,
counted, restarted with backoff, reported by health), each named ``partition-<p>/<kind>``:
``claim`` (tail reads and announcements), and while leading ``timers``, ``outbox`` and one
``attempt`` per running attempt; ``run()`` itself is the read loop (``apply``, spawned by the
node). A restarted task first re-syncs with the leader shell (a claim starts over, popped timers
and an unfinished shipment are handed back), so nothing is lost or stuck.

Snapshots (``runtime.snapshots``) are I/O, so they live here, not in the leader shell: ``run()``
restores a store with no (or too old) state before its read loop and its claim start, and after
each batch the ``Snapshotter`` is told the new position and whether this node leads; it decides
whether a snapshot is due (its count also moves with restores and on-demand snapshots, which the
shell never sees), takes it off the apply path and trims the log behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import assert_never

from partition_processor.actions import RespondToIngress
from partition_processor.processor import BatchOutcome, LogEntry, PartitionProcessor
from partition_processor.tables import Store
from runtime.clock import Clock, SystemClock
from runtime.crashpoints import crash_point
from runtime.faults import fault_point
from runtime.invoker.attempt import StreamTimeouts
from runtime.invoker.channels import ChannelPool
from runtime.invoker.invoker import PartitionInvoker
from runtime.invoker.slots import RunningSlots
from runtime.limits import SizePolicy
from runtime.log import Log, LogRecord, ReadHint
from runtime.logs import invocation_fields
from runtime.metadata import Registry
from runtime.metrics import (
    APPLY_BATCH,
    APPLY_LATENCY,
    PARTITION_APPLIED,
    PARTITION_LEADER,
    RECORDS_APPLIED,
    RECORDS_DROPPED,
    RECORDS_REJECTED,
)
from runtime.snapshots.manager import Snapshotter, restore_partition
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.worker.leader import (
    AbortAttempt,
    Announce,
    Deliver,
    FireTimers,
    Lead,
    Output,
    PartitionLeader,
    Propose,
    ReadTail,
    Respond,
    StartAttempt,
    StepDown,
    WakeOutbox,
    WakeTimers,
)
from runtime.worker.proposer import LeaderProposer, Term

log = logging.getLogger(__name__)

# A standby waits (``_pace``) only after a batch smaller than this (a quarter of what one read
# of either log returns at most): a bigger one means records were waiting.
_PACE_BELOW_RECORDS = 64
_PACE_BELOW_BYTES = 256 * 1024

Responder = Callable[[RespondToIngress], None]


class _Leadership:
    """The tasks that exist only while this node leads the partition."""

    def __init__(self, invoker: PartitionInvoker) -> None:
        self.invoker = invoker
        self.timers_wakeup = asyncio.Event()
        self.outbox_wakeup = asyncio.Event()
        self.tasks: list[SupervisedTask] = []

    async def stop(self) -> None:
        await self.invoker.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            await task.stop()


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
        limits: SizePolicy,
        supervisor: Supervisor,
        slots: RunningSlots,
        timeouts: StreamTimeouts,
        owned: bool = True,
        clock: Clock | None = None,
        snapshots: Snapshotter | None = None,
        on_leader_change: Callable[[int], None] | None = None,
        standby_pace_s: float = 0.0,
    ) -> None:
        """``on_leader_change(partition)``: called when an applied batch moved the partition's
        leadership to a new epoch (the ingress re-attaches the calls waiting on it).
        ``standby_pace_s``: while a caught-up standby, wait this long between batches
        (``NodeConfig.standby_apply_interval_ms``)."""
        self._standby_pace_s = standby_pace_s
        self._unpaced = asyncio.Event()  # set by a claim: a paced standby reads on at once
        # Idle while paced: a log fetching ahead (Kafka) leaves the partition out meanwhile.
        self._read_hint = ReadHint()
        self._on_leader_change = on_leader_change
        self._slots = slots
        self._timeouts = timeouts
        self.partition = partition
        self._limits = limits
        self._log = log_
        self._store = store
        self._node_id = node_id
        self._registry = registry
        self._channels = channels
        self._respond = respond
        self._supervisor = supervisor
        self._clock = clock or SystemClock()
        self.processor = PartitionProcessor(store, partition, node_id)
        self.leader = PartitionLeader(self.processor, partitions=log_.partitions, owned=owned)
        self._leadership: _Leadership | None = None
        self._claims: asyncio.Queue[ReadTail | Announce] = asyncio.Queue()
        # Set once leading (a single node waits for it before it says it is ready).
        self.caught_up = asyncio.Event()
        # Set once applied up to the tail seen at start (a cluster node waits for this).
        self.synced = asyncio.Event()
        self._snapshots = snapshots
        # Label children looked up once: they are set for every applied batch.
        self._applied_gauge = PARTITION_APPLIED.labels(str(partition))
        self._leader_gauge = PARTITION_LEADER.labels(str(partition))

    @property
    def is_leader(self) -> bool:
        return self._leadership is not None

    @property
    def owned(self) -> bool:
        """This node should lead the partition (its own, or assigned by the cluster's group)."""
        return self.leader.owned

    def claim(self) -> None:
        """Lead this partition: announce a new epoch once applied up to the log's tail."""
        self._unpaced.set()
        self._queue_claim_steps(self.leader.claim())

    async def release(self) -> None:
        """Stop leading (another node is taking the partition over); keep applying."""
        await self._carry_out(self.leader.release())

    def hand_over(self) -> None:
        """Lead until the next leader's announcement is applied, then follow (``PartitionLeader
        .hand_over``)."""
        self.leader.hand_over()

    async def run(self) -> None:
        self._claims = asyncio.Queue()  # (again, when the supervisor restarts a failed worker)
        if self._snapshots is not None:
            # Before the claim starts, so that its ReadTail is answered (``on_tail``) only once
            # the store has jumped to the snapshot: a claim that saw the tail before the restore
            # would wait for an ``on_batch`` that never comes when the snapshot is at the tail.
            await self._restore(self._snapshots)
        self._queue_claim_steps(self.leader.start())
        claimer = self._supervisor.spawn(
            f"partition-{self.partition}/claim", self._claim_runs(), partition=self.partition
        )
        try:
            await self._read_loop()
        finally:
            await claimer.stop()
            await self._carry_out(self.leader.stop())

    def _queue_claim_steps(self, outputs: list[Output]) -> None:
        for output in outputs:
            assert isinstance(output, ReadTail | Announce), output
            self._claims.put_nowait(output)

    def _claim_runs(self) -> Callable[[], Awaitable[None]]:
        """The claim loop's body for the supervisor: a rerun starts the claim over."""
        runs = 0

        async def body() -> None:
            nonlocal runs
            runs += 1
            if runs > 1:
                # A claim step failed (say the announcement was not appended): the steps still
                # queued belong to that claim; without a new one the partition would stay unled.
                while not self._claims.empty():
                    self._claims.get_nowait()
                self._queue_claim_steps(self.leader.claim_failed())
            await self._claim_loop()

        return body

    async def _claim_loop(self) -> None:
        """Claim steps in order: read the tail, then (once caught up) announce."""
        while True:
            step = await self._claims.get()
            if isinstance(step, ReadTail):
                tail = await self._log.tail(self.partition)
                self._queue_claim_steps(self.leader.on_tail(tail, self._clock.now_ms()))
            else:
                fault_point("leader.announce")
                await self._log.append(self.partition, [step.record])

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

    async def _read_loop(self) -> None:
        fsm = self.processor.fsm
        applied, epoch = fsm.applied_lsn, fsm.leader_epoch
        tail = await self._log.tail(self.partition)
        if applied >= tail - 1:
            self.synced.set()
        async for batch in self._log.read(self.partition, applied + 1, self._read_hint):
            fault_point("worker.apply")
            started = time.perf_counter()
            outcome = self.processor.apply_batch([LogEntry(r.lsn, r.payload) for r in batch])
            APPLY_LATENCY.observe(time.perf_counter() - started)
            APPLY_BATCH.observe(len(batch))
            self._applied_gauge.set(outcome.applied_lsn)
            self._report_rejections(outcome)
            _count_drops(outcome)
            RECORDS_APPLIED.inc(len(batch))
            if outcome.leader_epoch != epoch:
                epoch = outcome.leader_epoch
                if self._on_leader_change is not None:
                    self._on_leader_change(self.partition)
            if outcome.applied_lsn >= tail - 1:
                self.synced.set()
            await self._carry_out(self.leader.on_batch(outcome, self._clock.now_ms()))
            if self._snapshots is not None:
                # After the leader shell saw the batch, so ``is_leader`` is this batch's answer;
                # the rows are read before the next batch is applied (this loop is the writer).
                self._snapshots.after_batch(self.partition, outcome.applied_lsn, self.is_leader)
            await self._pace(batch)

    async def _pace(self, batch: list[LogRecord]) -> None:
        """A caught-up standby waits before its next batch: meanwhile the records that arrive
        stay in the log (its reader says it is idle: Kafka leaves the partition out of its
        fetches), so the next batch carries a whole interval's records and each batch's fixed
        costs (the fetch, the apply, its store commit, the wake-up) are paid once per interval
        instead of once per fetch. Nothing waits for a standby's position but a claim, which
        ends the wait; a leader, one handing over and one catching up never wait. Nor does a
        standby whose batch was big: records were waiting (a backlog, or more per interval than
        one read returns), and waiting after every such batch would cap how fast it can apply."""
        if self._standby_pace_s <= 0 or not self.synced.is_set():
            return
        if self.is_leader or self.owned:
            return
        if len(batch) >= _PACE_BELOW_RECORDS or sum(len(r.payload) for r in batch) >= (
            _PACE_BELOW_BYTES
        ):
            return
        # A timer handle setting the event, not wait_for (a task, a future and a timer per
        # wait, each wait of each standby partition: issue 7's loop iterations).
        due = asyncio.get_running_loop().call_later(self._standby_pace_s, self._unpaced.set)
        self._read_hint.set_idle(True)
        try:
            await self._unpaced.wait()
        finally:
            due.cancel()
            self._read_hint.set_idle(False)
        self._unpaced.clear()  # (a claim sets it too: ``owned`` keeps a claimer from waiting)

    def _report_rejections(self, outcome: BatchOutcome) -> None:
        for rejection in outcome.rejected:
            RECORDS_REJECTED.labels(rejection.reason).inc()
            about = rejection.invocation_id
            log.error(
                "partition %d: record at lsn %d could not be applied (%s%s): %s",
                self.partition,
                rejection.lsn,
                rejection.reason,
                f" {about}" if about else "",
                rejection.detail,
                extra=invocation_fields(about) if about else None,
            )

    async def _carry_out(self, outputs: list[Output]) -> None:
        for output in outputs:
            leadership = self._leadership
            match output:
                case ReadTail() | Announce():
                    self._claims.put_nowait(output)
                case Lead(term=term):
                    self._become_leader(term)
                case StepDown():
                    self._leadership = None
                    self._leader_gauge.set(0)
                    if leadership is not None:
                        await leadership.stop()
                # (No leadership here only when a release interleaved with this batch's step
                # down: the attempt belongs to the leadership that was just stopped.)
                case StartAttempt(action=action):
                    if leadership is not None:
                        leadership.invoker.start(action)
                case Deliver(action=action):
                    if leadership is not None:
                        leadership.invoker.deliver(action)
                case AbortAttempt(invocation_id=invocation_id):
                    if leadership is not None:
                        leadership.invoker.abort(invocation_id)
                case Respond(action=action):
                    self._respond(action)
                case Propose(records=records):
                    await self._log.append(self.partition, records)
                case FireTimers(records=records):
                    await self._log.append(self.partition, records)
                case WakeTimers():
                    if leadership is not None:
                        leadership.timers_wakeup.set()
                case WakeOutbox():
                    if leadership is not None:
                        leadership.outbox_wakeup.set()
                case _:
                    assert_never(output)

    def _become_leader(self, term: Term) -> None:
        proposer = LeaderProposer(self._log, term, self._clock)
        invoker = PartitionInvoker(
            self.partition,
            self._store,
            self._registry,
            self._channels,
            proposer,
            self._limits,
            supervisor=self._supervisor,
            slots=self._slots,
            timeouts=self._timeouts,
            on_ended=self.leader.attempt_ended,
        )
        leadership = self._leadership = _Leadership(invoker)
        self._leader_gauge.set(1)
        leadership.tasks = [
            self._supervisor.spawn(
                f"partition-{self.partition}/timers",
                lambda: self._fire_timers(leadership),
                partition=self.partition,
            ),
            self._supervisor.spawn(
                f"partition-{self.partition}/outbox",
                lambda: self._ship_outbox(leadership),
                partition=self.partition,
            ),
        ]
        self.caught_up.set()

    async def _fire_timers(self, leadership: _Leadership) -> None:
        """Propose each timer when due; sleep until the earliest or until one is registered."""
        wakeup = leadership.timers_wakeup
        # A clock moved forward (sdk.testing) makes timers due at once: wake to fire them.
        unwatch = self._clock.watch(wakeup)
        try:
            await self._fire_due_timers(wakeup)
        finally:
            unwatch()

    async def _fire_due_timers(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wakeup.clear()
            fire = self.leader.tick(self._clock.now_ms())
            if fire is not None:
                try:
                    fault_point("timers.fire")
                    await self._log.append(self.partition, fire.records)
                except Exception:
                    # Handed back to fire again; the failure (the log refusing the append, too)
                    # ends the task: the supervisor reports it in health and restarts it.
                    self.leader.timers_failed(fire.timers)
                    raise
                continue
            wake_ms = self.leader.next_wake_ms()
            if wake_ms is None:
                await wakeup.wait()
                continue
            delay_s = (wake_ms - self._clock.now_ms()) / 1000
            if delay_s > 0:
                # A timer handle setting the event, not wait_for (a task, a future and a timer
                # per wait): the head is due, or an earlier timer was registered.
                due = loop.call_later(delay_s, wakeup.set)
                try:
                    await wakeup.wait()
                finally:
                    due.cancel()

    async def _ship_outbox(self, leadership: _Leadership) -> None:
        """Deliver outbox rows to their partitions, then truncate them (one shipment at a time)."""
        wakeup = leadership.outbox_wakeup
        wakeup.set()  # (re)started: ship whatever is left (a previous leader's, or this task's)
        while True:
            await wakeup.wait()
            wakeup.clear()
            shipment = self.leader.ship(self._clock.now_ms())
            if shipment is None:
                continue
            for seq, reason in shipment.unroutable:
                RECORDS_REJECTED.labels("unroutable").inc()
                log.error("partition %d: outbox row %d dropped: %s", self.partition, seq, reason)
            try:
                fault_point("outbox.ship")
                crash_point("outbox.before_ship")  # the rows are committed, not yet delivered
                await asyncio.gather(
                    *(self._log.append(t, records) for t, records in shipment.by_target.items())
                )
                crash_point("outbox.after_ship")  # delivered, not yet truncated: shipped again
                truncate = self.leader.shipped(shipment, self._clock.now_ms())
                if truncate is not None:
                    await self._log.append(self.partition, truncate.records)
            except Exception:
                # ``ship`` offers the same rows again (ProducerDedup drops what did arrive); the
                # failure (the log refusing an append, too) ends the task: the supervisor
                # reports it in health and restarts it, and the restart ships them.
                self.leader.ship_failed()
                raise


def _count_drops(outcome: BatchOutcome) -> None:
    """Records that had no effect, by guard (``cairn_records_dropped_total``): a deposed
    leader's late records show up as ``stale_epoch``."""
    stats = outcome.stats
    for reason, count in (
        ("stale_epoch", stats.stale_epoch),
        ("producer_repeat", stats.producer_repeats),
        ("no_effect", stats.no_effect),
    ):
        if count:
            RECORDS_DROPPED.labels(reason).inc(count)
