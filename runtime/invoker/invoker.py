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
from runtime.invoker.attempt import Attempt, StreamTimeouts
from runtime.invoker.channels import ChannelPool
from runtime.invoker.slots import RunningSlots
from runtime.metadata import Registry
from runtime.metrics import ATTEMPTS_STARTED
from runtime.worker.proposer import LeaderProposer

log = logging.getLogger(__name__)


class PartitionInvoker:
    """Starts attempts on ``StartInvocation`` and routes ``NotifyInvoker`` to them."""

    def __init__(
        self,
        partition: int,
        store: KeyValueReader,
        registry: Registry,
        channels: ChannelPool,
        proposer: LeaderProposer,
        slots: RunningSlots,
        timeouts: StreamTimeouts,
    ) -> None:
        self._slots = slots
        self._timeouts = timeouts
        self._partition = partition
        self._store = store
        self._registry = registry
        self._channels = channels
        self._proposer = proposer
        self._running: dict[str, tuple[Attempt, asyncio.Task[None]]] = {}

    def start(self, action: StartInvocation) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None:
            if current[0].number >= action.attempt:
                return  # already running (a resume scan and a fresh start can both ask)
            current[1].cancel()
        attempt = Attempt(
            action.invocation_id,
            action.attempt,
            partition=self._partition,
            store=self._store,
            registry=self._registry,
            channels=self._channels,
            proposer=self._proposer,
            slots=self._slots,
            timeouts=self._timeouts,
        )
        task = asyncio.create_task(attempt.run(), name=f"attempt-{action.invocation_id}")
        ATTEMPTS_STARTED.inc()
        self._running[action.invocation_id] = (attempt, task)
        task.add_done_callback(lambda done: self._finished(action.invocation_id, done))

    def notify(self, action: NotifyInvoker) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None and current[0].number == action.attempt:
            current[0].notify(action.index, action.completion, action.completion_seq)

    def cancel(self, action: CancelInvocation) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None and current[0].number == action.attempt:
            current[0].cancel(action.cancel_seq)

    def abort(self, action: AbortInvocation) -> None:
        """The invocation was killed: stop its attempt without proposing anything more."""
        current = self._running.pop(action.invocation_id, None)
        if current is not None:
            current[1].cancel()

    def notify_invocation_id(self, action: NotifyInvocationId) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None and current[0].number == action.attempt:
            current[0].notify_invocation_id(action.index, action.callee_id)

    def _finished(self, invocation_id: str, task: asyncio.Task[None]) -> None:
        current = self._running.get(invocation_id)
        if current is not None and current[1] is task:
            del self._running[invocation_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("attempt of %s crashed: %r", invocation_id, error, exc_info=error)

    async def stop(self) -> None:
        tasks = [task for _, task in self._running.values()]
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
