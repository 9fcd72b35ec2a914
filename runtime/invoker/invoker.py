"""The leader's invoker for one partition: one task per running attempt."""

from __future__ import annotations

import asyncio
import logging

from partition_processor.actions import (
    AbortInvocation,
    CancelInvocation,
    NotifyInvocationId,
    NotifyInvoker,
    StartInvocation,
)
from partition_processor.tables import KeyValueReader
from runtime.invoker.attempt import Attempt
from runtime.invoker.channels import ChannelPool
from runtime.metadata import Registry
from runtime.metrics import ATTEMPTS_STARTED, OPEN_ATTEMPTS
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.worker.proposer import LeaderProposer

log = logging.getLogger(__name__)


class _Running:
    """The attempt now running for an invocation: a fresh ``Attempt`` after each restart."""

    def __init__(self, attempt: Attempt) -> None:
        self.number = attempt.number
        self.attempt = attempt
        self.runs = 0
        self.task: SupervisedTask | None = None


class PartitionInvoker:
    """Starts attempts on ``StartInvocation`` and routes ``NotifyInvoker`` to them.

    Each attempt is a supervised task: one that crashes (say its effects could not be appended)
    is logged, counted and started again after a backoff as a fresh attempt of the same number,
    which reads the journal from the store and replays it, as after a leader change.
    """

    def __init__(
        self,
        partition: int,
        store: KeyValueReader,
        registry: Registry,
        channels: ChannelPool,
        proposer: LeaderProposer,
        supervisor: Supervisor,
    ) -> None:
        self._partition = partition
        self._store = store
        self._registry = registry
        self._channels = channels
        self._proposer = proposer
        self._supervisor = supervisor
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
        )

    def start(self, action: StartInvocation) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None:
            if current.number >= action.attempt:
                return  # already running (a resume scan and a fresh start can both ask)
            assert current.task is not None
            current.task.cancel()
        running = _Running(self._attempt(action))

        async def run() -> None:
            if running.runs > 0:
                running.attempt = self._attempt(action)  # restarted after a crash
            running.runs += 1
            await running.attempt.run()

        task = self._supervisor.spawn(
            f"partition-{self._partition}/attempt", run, partition=self._partition
        )
        running.task = task
        OPEN_ATTEMPTS.inc()
        ATTEMPTS_STARTED.inc()
        self._running[action.invocation_id] = running
        task.add_done_callback(lambda done: self._finished(action.invocation_id, done))

    def notify(self, action: NotifyInvoker) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None and current.number == action.attempt:
            current.attempt.notify(action.index, action.completion, action.completion_seq)

    def cancel(self, action: CancelInvocation) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None and current.number == action.attempt:
            current.attempt.cancel(action.cancel_seq)

    def abort(self, action: AbortInvocation) -> None:
        """The invocation was killed: stop its attempt without proposing anything more."""
        current = self._running.pop(action.invocation_id, None)
        if current is not None and current.task is not None:
            current.task.cancel()

    def notify_invocation_id(self, action: NotifyInvocationId) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None and current.number == action.attempt:
            current.attempt.notify_invocation_id(action.index, action.callee_id)

    def _finished(self, invocation_id: str, task: SupervisedTask) -> None:
        OPEN_ATTEMPTS.dec()
        current = self._running.get(invocation_id)
        if current is not None and current.task is task:
            del self._running[invocation_id]

    async def stop(self) -> None:
        tasks = [running.task for running in self._running.values() if running.task is not None]
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(task.stop() for task in tasks))
