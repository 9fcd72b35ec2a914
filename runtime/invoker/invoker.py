"""The leader's invoker for one partition: one task per running attempt.

Which attempts run is decided by the sans-I/O leader shell (``runtime.worker.leader``); this
class only owns their tasks and tells the shell when one ends.
"""

from __future__ import annotations

import asyncio
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
from runtime.worker.proposer import LeaderProposer

log = logging.getLogger(__name__)


AttemptEnded = Callable[[str, int], None]


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
        self._on_ended = on_ended
        self._running: dict[str, tuple[Attempt, asyncio.Task[None]]] = {}

    def start(self, action: StartInvocation) -> None:
        current = self._running.get(action.invocation_id)
        if current is not None:
            current[1].cancel()  # superseded by a newer attempt
        attempt = Attempt(
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
        task = asyncio.create_task(attempt.run(), name=f"attempt-{action.invocation_id}")
        ATTEMPTS_STARTED.inc()
        self._running[action.invocation_id] = (attempt, task)
        task.add_done_callback(lambda done: self._finished(action.invocation_id, attempt, done))

    def deliver(self, action: NotifyInvoker | NotifyInvocationId | CancelInvocation) -> None:
        current = self._running.get(action.invocation_id)
        if current is None or current[0].number != action.attempt:
            return
        attempt = current[0]
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
        if current is not None:
            current[1].cancel()

    def _finished(self, invocation_id: str, attempt: Attempt, task: asyncio.Task[None]) -> None:
        current = self._running.get(invocation_id)
        if current is not None and current[1] is task:
            del self._running[invocation_id]
            self._on_ended(invocation_id, attempt.number)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("attempt of %s crashed: %r", invocation_id, error, exc_info=error)

    async def stop(self) -> None:
        tasks = [task for _, task in self._running.values()]
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
