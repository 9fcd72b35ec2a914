"""Running a node's stop to its end (``Node.stop``).

A stop is a sequence of steps (answer the waiting callers, close the servers, stop the tasks,
close the channels, then the log and the store). Two ways it used to end half done, leaving the
log's files and the store open (and, in a process that goes on, such as a test run or an
embedding application, an endpoint's gRPC calls and server with them):

- a step that raised skipped every step after it;
- a caller that stopped waiting (``asyncio.wait_for`` timing out, a cancelled task) cut the
  sequence at its current step, and the next ``stop`` returned at once (already stopping).

So every step runs whatever the ones before it did, the first failure is raised once all have
run, and the sequence runs as a task of its own that every ``stop`` call waits for: a cancelled
caller is cancelled (never swallowed), the stop goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

# A step: what it stops (for the log line when it fails) and the call doing it.
StopStep = tuple[str, Callable[[], Awaitable[object] | None]]


async def run_steps(steps: Sequence[StopStep], what: str = "the node") -> None:
    """Run every step in order, each even if one before it failed; raise the first failure
    (each is logged as a failure of stopping ``what``)."""
    first: Exception | None = None
    for name, step in steps:
        try:
            result = step()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # (a cancellation of the whole stop still ends it)
            log.error("stopping %s: %s failed", what, name, exc_info=exc)
            if first is None:
                first = exc
    if first is not None:
        raise first


class StopOnce:
    """The one stop of an owner: started by the first ``run``, awaited by every call."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def run(self, steps: Callable[[], Sequence[StopStep]]) -> None:
        """Start the stop (``steps()``, read now) unless it has started; wait for it to end.

        The stop is owned here and awaited by every caller; ``shield`` keeps a caller's
        cancellation (its timeout) from reaching it.
        """
        if self._task is None:
            self._task = asyncio.ensure_future(run_steps(steps()))
        await asyncio.shield(self._task)
