"""LocalLog's writing side: the writer task and its group commit (DESIGN §3).

One writer task takes every queued append, hands the writes to the log's writing thread and
fsyncs each touched file once (group commit), the files of different partitions in parallel; the
LSNs become visible to readers and ``append`` returns only after that fsync.

The writing thread lives as long as the log (``WriterThread``): a round is handed over with one
queue put and comes back with one ``call_soon_threadsafe``, where ``asyncio.to_thread`` paid an
executor submit, a context copy, a concurrent future and its asyncio wrapper every round (issue
10: 9.6% of the event loop's samples under counter load).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.log.base import LogError
from runtime.log.segments import Segment, create_segment_sync, frame, write_all, write_fd

if TYPE_CHECKING:
    from runtime.log.embedded import _Partition

_log = logging.getLogger(__name__)

# Most fsyncs in flight at once (the writing thread's own and its crew's): past about 8 a
# virtual disk gains nothing more.
_SYNCS_IN_FLIGHT = 8


@dataclass(eq=False)
class _Append:
    partition: int
    payloads: list[bytes]
    future: asyncio.Future[int]


@dataclass(eq=False)
class _PartitionWrite:
    """What one commit round writes to one partition (built on the loop, run in the thread)."""

    partition: _Partition
    active: Segment
    first_lsn: int
    appends: list[_Append] = field(default_factory=list)
    # Filled by the writer thread: (segment, new frame offsets, new durable size) per segment.
    written: list[tuple[Segment, array[int], int]] = field(default_factory=list)


# What the writing thread hands back for a round: None when it is durable, else what it raised.
_Outcome = BaseException | None


class WriterThread:
    """One long-lived thread that runs each round's writes and fsyncs (``work``) off the loop.

    It never stops on a failure: whatever ``work`` raises is handed back to the round's future,
    where the (supervised) writer task fails the round. ``stop`` ends it once the rounds handed
    over before are done; ``LocalLog.close`` stops it, so no thread outlives the log.
    """

    def __init__(self, name: str, work: Callable[[list[_PartitionWrite]], None]) -> None:
        self._work = work
        self._rounds: queue.SimpleQueue[
            tuple[list[_PartitionWrite], asyncio.AbstractEventLoop, asyncio.Future[_Outcome]] | None
        ] = queue.SimpleQueue()
        # A daemon, so that a log never closed (a crashed test) does not keep a process alive.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, writes: list[_PartitionWrite]) -> asyncio.Future[_Outcome]:
        """Run ``work(writes)`` on the thread; the future resolves (on the loop) once it has."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[_Outcome] = loop.create_future()
        self._rounds.put((writes, loop, done))
        return done

    def stop(self) -> None:
        """End the thread after the rounds already handed over, and wait for it."""
        if self._thread.is_alive():
            self._rounds.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (round_ := self._rounds.get()) is not None:
            writes, loop, done = round_
            outcome: _Outcome = None
            try:
                self._work(writes)
            except BaseException as exc:  # noqa: BLE001 - handed to the writer task, which raises
                outcome = exc
            try:
                loop.call_soon_threadsafe(_settle, done, outcome)
            except RuntimeError:
                pass  # the loop is closed: nobody waits for this round any more


def _settle(done: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
    if not done.done():
        done.set_result(outcome)


class SyncCrew:
    """Threads that fsync a round's other files while the writing thread syncs one itself.

    A job is one queue put and its outcome one queue put back, both C-level ``SimpleQueue``s: a
    ``ThreadPoolExecutor.map`` paid a ``Future``, a work item, a ``Condition`` wait and notify
    and the executor's bookkeeping per file, all holding the GIL that the event loop needs
    (issue 10). Threads start as rounds first need them and end with ``stop``.
    """

    def __init__(self, sync_file: Callable[[int], None]) -> None:
        self._sync_file = sync_file
        # Only the writing thread hands out jobs, one round at a time: one outcome queue.
        self._jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def sync_all(self, fds: list[int]) -> None:
        """Sync every file of ``fds`` at once (the first on this thread); return when all
        have returned, raising the first failure (after the others are done: none is still
        syncing a file when the caller goes on, say to close it)."""
        others = fds[1:]
        while len(self._threads) < min(len(others), _SYNCS_IN_FLIGHT - 1):
            thread = threading.Thread(
                target=self._run, name=f"cairn-fsync-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        for fd in others:
            self._jobs.put(fd)
        failure: _Outcome = None
        try:
            self._sync_file(fds[0])
        except BaseException as exc:  # noqa: BLE001 - raised below, once the others are done
            failure = exc
        for _ in others:
            outcome = self._outcomes.get()
            if failure is None:
                failure = outcome
        if failure is not None:
            raise failure

    def stop(self) -> None:
        """End the threads (idle: every round waits for its own jobs) and wait for them."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _run(self) -> None:
        while (fd := self._jobs.get()) is not None:
            try:
                self._sync_file(fd)
            except BaseException as exc:  # noqa: BLE001 - handed to the round, which raises
                self._outcomes.put(exc)
            else:
                self._outcomes.put(None)


class LocalLogWrites:
    """The writing methods of ``LocalLog`` (a mixin: ``LocalLog.__init__`` sets these)."""

    _parts: list[_Partition]
    _queue: list[_Append]
    _work_ready: asyncio.Event
    _closing: bool
    _failure: LogError | None
    _writer_cancelled: bool
    _syncers: SyncCrew | None
    _writer_thread: WriterThread | None
    _sync_file: Callable[[int], None]
    _segment_bytes: int

    async def _run_own_writer(self) -> None:
        """The writer without a supervisor: a failed write is logged and ends it."""
        try:
            await self._run_writer()
        except LogError as exc:
            _log.error("LocalLog write failed; appends refused until restart", exc_info=exc)

    async def _run_writer(self) -> None:
        """Commit whatever is queued, one round at a time, until close() and the queue is empty.

        Appends queued while a round is being fsynced form the next round: that is the group
        commit. A failed write raises ``LogError`` (after failing its appends); started again
        while the log refuses appends, the writer fails again at once, so that a supervisor
        keeps reporting it until the node restarts.
        """
        try:
            if self._failure is not None and not self._closing:
                raise LogError(f"{self._failure}; appends refused until restart") from self._failure
            while self._queue or not self._closing:
                if not self._queue:
                    await self._work_ready.wait()
                    self._work_ready.clear()
                    continue
                batch, self._queue = self._queue, []
                await self._commit(batch)
        except asyncio.CancelledError:
            self._writer_cancelled = True  # appends are refused from now on
            await self._write_queued()
            raise
        finally:
            # Whatever ended the writer, nobody else will commit what is still queued.
            _fail(self._queue, LogError("the log writer stopped"))
            self._queue = []

    async def _write_queued(self) -> None:
        """Stopped by a supervisor's shutdown: still write what was queued, as close() does
        (a node stops its tasks before it closes the log)."""
        while self._queue and self._failure is None:
            batch, self._queue = self._queue, []
            try:
                await self._commit(batch)
            except (LogError, asyncio.CancelledError):
                return  # the caller re-raises the first cancellation

    async def _commit(self, batch: list[_Append]) -> None:
        if self._failure is not None:
            _fail(batch, self._failure)
            return
        plan: dict[int, _PartitionWrite] = {}
        for item in batch:
            write = plan.get(item.partition)
            if write is None:
                part = self._parts[item.partition]
                write = _PartitionWrite(part, part.segments[-1], part.end_lsn)
                plan[item.partition] = write
            write.appends.append(item)
        writes = list(plan.values())
        if self._writer_thread is None:
            self._writer_thread = WriterThread("cairn-log-writer", self._write_sync)
        # The thread cannot be stopped and writes these files: a cancellation meanwhile waits
        # for it (so close() never closes a file under it, and what it made durable is
        # acknowledged), then propagates. (Shielded: a cancelled future would lose the outcome.)
        work = self._writer_thread.submit(writes)
        cancelled = False
        while not work.done():
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                cancelled = True
        exc = work.result()
        failure: LogError | None = None
        if exc is not None:
            failure = LogError(f"log write failed: {exc!r}")
            failure.__cause__ = exc
            self._failure = failure
            _fail(batch, failure)
            _close_unpublished(writes)
        else:
            for write in writes:
                self._publish(write)
        if cancelled:
            raise asyncio.CancelledError
        if failure is not None:
            raise failure

    def _publish(self, write: _PartitionWrite) -> None:
        """Make a fsynced round visible: extend indexes, cache, resolve appends, wake readers."""
        part = write.partition
        for seg, positions, size in write.written:
            if seg is not part.segments[-1]:
                part.segments.append(seg)
                part.bases.append(seg.base_lsn)
            seg.positions.extend(positions)
            seg.size = size
        lsn = write.first_lsn
        for item in write.appends:
            lsn += len(item.payloads)
            part.remember(item.payloads)
            if not item.future.done():
                item.future.set_result(lsn - 1)
        part.end_lsn = lsn
        part.notify()

    def _write_sync(self, writes: list[_PartitionWrite]) -> None:
        """Worker thread: write every partition's frames, then fsync each touched file once."""
        to_sync = [self._write_partition_sync(write) for write in writes]
        if len(to_sync) == 1:
            self._sync_file(to_sync[0])
            return
        if self._syncers is None:
            self._syncers = SyncCrew(self._sync_file)
        # The device flushes several files' data at once (3x faster for 24 files here): the
        # round is durable when every one of them is (a failure raises once all returned).
        self._syncers.sync_all(to_sync)

    def _write_partition_sync(self, write: _PartitionWrite) -> int:
        """Worker thread: append one partition's frames, rolling segments; return the fd to sync."""
        seg, size, lsn = write.active, write.active.size, write.first_lsn
        positions: array[int] = array("q")
        chunks: list[bytes] = []
        for item in write.appends:
            for payload in item.payloads:
                framed = frame(payload)
                if size > 0 and size + len(framed) > self._segment_bytes:
                    # Seal the full segment durably before the next one exists, so that only
                    # the last segment can ever have a torn tail.
                    write_all(write_fd(seg), chunks)
                    self._sync_file(write_fd(seg))
                    os.close(write_fd(seg))
                    seg.wfd = None
                    write.written.append((seg, positions, size))
                    seg = create_segment_sync(write.partition.path, lsn)
                    size, positions, chunks = 0, array("q"), []
                positions.append(size)
                chunks.append(framed)
                size += len(framed)
                lsn += 1
        write_all(write_fd(seg), chunks)
        write.written.append((seg, positions, size))
        return write_fd(seg)


def _fail(items: list[_Append], error: LogError) -> None:
    """Fail the appends still waiting (a cancelled caller's future is already done)."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)


def _close_unpublished(writes: list[_PartitionWrite]) -> None:
    """After a failed round: close segments the thread created but nobody will publish."""
    for write in writes:
        for seg, _, _ in write.written:
            if seg not in write.partition.segments and seg.wfd is not None:
                os.close(seg.wfd)
                seg.wfd = None
