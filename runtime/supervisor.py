"""One supervisor for every long-running task of a node (DESIGN §11, supervised tasks).

A task that fails is logged with its traceback, counted (``cairn_task_failures_total``),
restarted after an exponential backoff (capped) and counted again
(``cairn_task_restarts_total``). While it is down, or restarted but not yet stable, it is
*failing*: the node's health reports it. A task that returns is done and not restarted.
A task spawned with ``affects_health=False`` (a subscription consumer: its source cluster may be
down while the node serves every request) is reported by health without making it 503.

Stopping is cooperative and idempotent: the task is cancelled and awaited, and a
``CancelledError`` is never swallowed (a cancelled caller of ``stop`` is cancelled too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from runtime.metrics import TASK_FAILURES, TASK_RESTARTS

log = logging.getLogger(__name__)

TaskBody = Callable[[], Awaitable[None]]

# Restart backoff: 100 ms doubling up to 5 s. A restart that stays up this long is healthy again
# and its next failure starts from the initial backoff.
INITIAL_BACKOFF = timedelta(milliseconds=100)
MAX_BACKOFF = timedelta(seconds=5)
STABLE_AFTER = timedelta(seconds=1)
# A failure's message as health shows it is cut to this length (the log has all of it).
_REASON_CHARS_MAX = 300


class SupervisedTask:
    """A named task run (and re-run after a failure) by a ``Supervisor``."""

    def __init__(
        self,
        supervisor: Supervisor,
        name: str,
        body: TaskBody,
        *,
        partition: int | None,
        restart: bool,
        affects_health: bool = True,
        kind: str | None = None,
    ) -> None:
        self.name = name
        self.partition = partition
        self.affects_health = affects_health
        self._kind = kind
        self._supervisor = supervisor
        self._body = body
        self._restart = restart
        self.failures = 0
        self.restarts = 0
        self.last_backoff_s = 0.0  # how long it waited before its latest restart
        # Why the task is not serving now (None while it runs normally).
        self.failing: str | None = None
        self._task = asyncio.create_task(self._supervise(), name=name)

    @property
    def label(self) -> str:
        """The metric label: the task's kind without its partition (bounded cardinality)."""
        return self._kind if self._kind is not None else self.name.rsplit("/", 1)[-1]

    @property
    def done(self) -> bool:
        return self._task.done()

    async def _supervise(self) -> None:
        backoff_s = self._supervisor.initial_backoff.total_seconds()
        while True:
            started = time.monotonic()
            stable: asyncio.TimerHandle | None = None
            if self.failing is not None:
                stable = asyncio.get_running_loop().call_later(
                    self._supervisor.stable_after.total_seconds(), self._recovered
                )
            try:
                await self._body()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started >= self._supervisor.stable_after.total_seconds():
                    backoff_s = self._supervisor.initial_backoff.total_seconds()  # was stable
                self._failed(exc, backoff_s)
            else:
                self.failing = None
                return  # finished its work: nothing to restart
            finally:
                if stable is not None:
                    stable.cancel()
            if not self._restart:
                self.failing = None
                return
            self.last_backoff_s = backoff_s
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, self._supervisor.max_backoff.total_seconds())
            self.restarts += 1
            TASK_RESTARTS.labels(task=self.label).inc()
            log.info("task %s restarting (restart %d)", self.name, self.restarts)

    def _failed(self, exc: Exception, backoff_s: float) -> None:
        self.failures += 1
        TASK_FAILURES.labels(task=self.label).inc()
        what = f"{type(exc).__name__}: {exc}"
        if len(what) > _REASON_CHARS_MAX:
            what = what[: _REASON_CHARS_MAX - 1] + "…"
        if self._restart:
            self.failing = f"{self.label} restarting after {what}"
            log.error(
                "task %s failed (%d so far); restarting in %.1f s",
                self.name,
                self.failures,
                backoff_s,
                exc_info=exc,
            )
        else:
            log.error("task %s failed: %s", self.name, what, exc_info=exc)

    def _recovered(self) -> None:
        if self.failing is not None:
            log.info("task %s recovered", self.name)
        self.failing = None

    def add_done_callback(self, callback: Callable[[SupervisedTask], None]) -> None:
        """Call ``callback(self)`` once the task has ended (returned, failed for good, stopped)."""
        self._task.add_done_callback(lambda _: callback(self))

    def cancel(self) -> None:
        """Ask the task to stop, without waiting for it (``stop`` waits)."""
        self._supervisor._forget(self)
        self._task.cancel()

    async def stop(self) -> None:
        """Cancel the task and wait for it to end. Idempotent.

        ``gather`` waits for the task without raising its own cancellation, while a
        cancellation of the caller still propagates (and is not swallowed here).
        """
        self._supervisor._forget(self)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Supervisor:
    """Owns a node's long-running tasks; ``shutdown`` stops them all."""

    def __init__(
        self,
        *,
        initial_backoff: timedelta = INITIAL_BACKOFF,
        max_backoff: timedelta = MAX_BACKOFF,
        stable_after: timedelta = STABLE_AFTER,
    ) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self._tasks: dict[int, SupervisedTask] = {}
        self._closed = False

    def spawn(
        self,
        name: str,
        body: TaskBody,
        *,
        partition: int | None = None,
        restart: bool = True,
        affects_health: bool = True,
        kind: str | None = None,
    ) -> SupervisedTask:
        """Run ``body()`` as task ``name``; re-run it after a failure unless ``restart`` is off.

        Names of partition tasks are ``partition-<p>/<kind>``: the kind is the metric label.
        A task named after something unbounded (``subscription-<id>``) passes its ``kind``.
        With ``affects_health`` off, health lists the task while it fails but stays 200.
        """
        if self._closed:
            raise RuntimeError(f"the supervisor is shut down: cannot start {name}")
        task = SupervisedTask(
            self,
            name,
            body,
            partition=partition,
            restart=restart,
            affects_health=affects_health,
            kind=kind,
        )
        self._tasks[id(task)] = task
        task._task.add_done_callback(lambda _: self._forget(task))
        return task

    def _forget(self, task: SupervisedTask) -> None:
        self._tasks.pop(id(task), None)

    def failing(self) -> list[SupervisedTask]:
        """The tasks that are down or restarting now."""
        return [t for t in self._tasks.values() if t.failing is not None]

    def names(self) -> list[str]:
        return sorted(t.name for t in self._tasks.values())

    async def shutdown(self) -> None:
        """Stop every task. Idempotent; no task may be spawned afterwards.

        All are cancelled at once, so a parent (a partition's apply loop) does not go on
        starting children (its leader's tasks) while they are being stopped.
        """
        self._closed = True
        while self._tasks:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*(task.stop() for task in tasks))
