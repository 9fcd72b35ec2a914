"""LocalLog's writing side: the writer task and its group commit (DESIGN §3).

One writer task takes every queued append, writes the frames of each touched partition on the
event loop (into the page cache: microseconds) and has every touched file fsynced once by the
log's ``Syncer`` (group commit), the files of different partitions at once; the LSNs become
visible to readers and ``append`` returns only after that fsync.

The fsyncs run in a child process (``runtime.log.syncers.FsyncProcess``), not on threads of this
process: a thread that returns from a write or an fsync must take the GIL back from the busy
event loop, and under load a round spent more time waiting for the GIL than in the disk
(issue 10).
"""

from __future__ import annotations

import asyncio
import logging
import os
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.log.base import LogError
from runtime.log.segments import Segment, create_segment_sync, frame, write_all, write_fd

if TYPE_CHECKING:
    from runtime.log.embedded import _Partition
    from runtime.log.syncers import Syncer

_log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Append:
    partition: int
    payloads: list[bytes]
    future: asyncio.Future[int]


@dataclass(eq=False)
class _PartitionWrite:
    """What one commit round writes to one partition."""

    partition: _Partition
    active: Segment
    first_lsn: int
    appends: list[_Append] = field(default_factory=list)
    # Filled as the round writes: (segment, new frame offsets, new durable size) per segment.
    written: list[tuple[Segment, array[int], int]] = field(default_factory=list)


class LocalLogWrites:
    """The writing methods of ``LocalLog`` (a mixin: ``LocalLog.__init__`` sets these)."""

    _parts: list[_Partition]
    _queue: list[_Append]
    _work_ready: asyncio.Event
    _closing: bool
    _failure: LogError | None
    _writer_cancelled: bool
    _syncer: Syncer
    _segment_bytes: int
    _round_cancelled: bool

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
        # The round runs in this task (no hop to another): its waits for the syncer swallow a
        # cancellation and note it, so that close() never closes a file the round writes and
        # what it made durable is acknowledged; the cancellation propagates after.
        self._round_cancelled = False
        exc: Exception | None = None
        try:
            await self._write_round(writes)
        except Exception as error:  # noqa: BLE001 - fails the round's appends, raised below
            exc = error
        cancelled = self._round_cancelled
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

    async def _write_round(self, writes: list[_PartitionWrite]) -> None:
        """Write every partition's frames, then fsync each touched file once, all at once."""
        to_sync = [await self._write_partition(write) for write in writes]
        await self._durable(to_sync)

    async def _durable(self, fds: list[int]) -> None:
        """Wait until the syncer made ``fds`` durable, through any cancellation (noted in
        ``_round_cancelled``); raise its failure."""
        done = self._syncer.sync(fds)
        while not done.done():
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                self._round_cancelled = True
        done.result()

    async def _write_partition(self, write: _PartitionWrite) -> int:
        """Append one partition's frames, rolling segments; return the fd to sync."""
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
                    await self._durable([write_fd(seg)])
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
