"""The leader's invoker for one partition: one supervised task per running attempt.

Which attempts run is decided by the sans-I/O leader shell (``runtime.worker.leader``); this
class only owns their tasks and tells the shell when one ends. An attempt that crashes (say its
effects could not be appended) is logged, counted and started again by the supervisor after a
backoff, as a fresh ``Attempt`` of the same number that replays the journal from the store (as
after a leader change); the shell is told it ended only when its task is over for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from partition_processor.actions import (
    CancelInvocation,
    NotifyInvocationId,
    NotifyInvoker,
    StartInvocation,
)
from partition_processor.tables import KeyValueReader
from runtime.invoker.attempt import Attempt, StreamTimeouts
from runtime.invoker.channels import ChannelPool
from runtime.invoker.slots import RunningSlots
from runtime.limits import SizePolicy
from runtime.metadata import Registry
from runtime.metrics import ATTEMPTS_STARTED
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.worker.proposer import LeaderProposer

log = logging.getLogger(__name__)


AttemptEnded = Callable[[str, int], None]


class _Running:
    """The attempt now running for an invocation: a fresh ``Attempt`` after each restart."""

    def __init__(self, attempt: Attempt) -> None:
        self.number = attempt.number
        self.attempt = attempt
        self.runs = 0
        self.task: SupervisedTask | None = None


class PartitionInvoker:
    """Runs the attempts the leader shell starts and routes notifications to them."""

    def __init__(
        self,
        partition: int,
        store: KeyValueReader,
        registry: Registry,
        channels: ChannelPool,
        proposer: LeaderProposer,
        limits: SizePolicy,
        *,
        supervisor: Supervisor,
        slots: RunningSlots,
        timeouts: StreamTimeouts,
        on_ended: AttemptEnded,
    ) -> None:
        self._limits = limits
        self._slots = slots
        self._timeouts = timeouts
        self._partition = partition
        self._store = store
        self._registry = registry
        self._channels = channels
        self._proposer = proposer
        self._supervisor = supervisor
        self._on_ended = on_ended
        self._running: dict[str, _Running] = {}

    def _attempt(self, action: StartInvocation) -> Attempt:
        return Attempt(
            action.invocation_id,
            action.attempt,
            partition=self._partition,
            store=self._store,
            registry=self._registry,
            channels=self._channels,
            proposer=self._proposer,
            limits=self._limits,
            slots=self._slots,
            timeouts=self._timeouts,
        )

    def start(self, action: StartInvocation) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None and current.task is not None:
            current.task.cancel()  # superseded by a newer attempt
        running = _Running(self._attempt(action))

        async def run() -> None:
            if running.runs > 0:
                running.attempt = self._attempt(action)  # restarted after a crash
            running.runs += 1
            await running.attempt.run()

        # The kind alone names it (the metric label stays bounded); health gives the partition.
        task = self._supervisor.spawn(
            f"partition-{self._partition}/attempt", run, partition=self._partition
        )
        running.task = task
        ATTEMPTS_STARTED.inc()
        self._running[action.invocation_id] = running
        task.add_done_callback(lambda done: self._finished(action.invocation_id, running, done))

    def deliver(self, action: NotifyInvoker | NotifyInvocationId | CancelInvocation) -> None:
        current = self._running.get(action.invocation_id)
        if current is None or current.number != action.attempt:
            return
        attempt = current.attempt
        match action:
            case NotifyInvoker():
                attempt.notify(action.index, action.completion, action.completion_seq)
            case NotifyInvocationId():
                attempt.notify_invocation_id(action.index, action.callee_id)
            case CancelInvocation():
                attempt.cancel(action.cancel_seq)

    def abort(self, invocation_id: str) -> None:
        """The invocation was killed: stop its attempt without proposing anything more."""
        current = self._running.pop(invocation_id, None)
        if current is not None and current.task is not None:
            current.task.cancel()

    def _finished(self, invocation_id: str, running: _Running, task: SupervisedTask) -> None:
        # (A crash is logged and counted by the supervisor, which restarts the task: it ends
        # only once the attempt is over, superseded, aborted or stopped.)
        # The task's body is a closure over ``running``: dropping the task breaks that cycle,
        # so that the attempt is freed at once rather than by the garbage collector.
        running.task = None
        current = self._running.get(invocation_id)
        if current is running:
            del self._running[invocation_id]
            self._on_ended(invocation_id, running.number)

    async def stop(self) -> None:
        tasks = [running.task for running in self._running.values() if running.task is not None]
        self._running.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            await task.stop()
