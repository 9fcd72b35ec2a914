"""LocalLog: the embedded, durable, single-process log (DESIGN §3).

Layout of ``directory``::

    LOCK                              flock'ed while a LocalLog has the directory open
    meta.json                         {"format": 1, "partitions": N}, written once
    p0000/00000000000000000000.seg    segments of partition 0, named by their first LSN
    p0000/00000000000000131072.seg
    p0001/...

Segments (their frame format and file operations are in ``runtime.log.segments``) exist only so
that ``trim`` can drop whole files; the active (last) segment is the only one ever written to.

Durability (the writer side is in ``runtime.log.embedded_writer``): one writer task (under the
node's ``Supervisor`` when given one) takes every queued append, writes the frames and has each
touched file fsynced once (group commit) by the log's fsync process, the files of different
partitions at once; the LSNs become visible to readers and ``append`` returns only after that
fsync.
Memory: one ``array('q')`` of frame offsets per segment (8 bytes per record) and a small
per-partition cache of recent payloads so that tailing readers do no I/O; older records are read
back from disk in a worker thread.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from runtime.log.base import Log, LogError, LogRecord, ReadHint
from runtime.log.embedded_writer import LocalLogWrites, _Append
from runtime.log.segments import (
    HEADER,
    RECORD_BYTES_MAX,
    Segment,
    delete_segments_sync,
    open_directory_sync,
    read_frames_sync,
)
from runtime.log.syncers import FsyncProcess, Syncer, ThreadSyncer
from runtime.metrics import AppendMeter
from runtime.supervisor import SupervisedTask, Supervisor

__all__ = ["LocalLog"]

# One yielded batch stays below both caps (a single larger record is yielded alone).
_BATCH_RECORDS_MAX = 256
_BATCH_BYTES_MAX = 1 << 20
# Per-partition cache of the newest durable payloads; tailing readers are served from it.
_CACHE_RECORDS_MAX = 512
_CACHE_BYTES_MAX = 512 << 10


@dataclass(eq=False)
class _Partition:
    """In-memory state of one partition; owned by the event loop."""

    index: int
    path: Path
    segments: list[Segment]
    bases: list[int]
    end_lsn: int
    trim_lsn: int
    recent: collections.deque[bytes] = field(default_factory=collections.deque)
    recent_start: int = 0
    recent_bytes: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake every reader waiting for new records (a fresh Event per generation)."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    def remember(self, payloads: list[bytes]) -> None:
        """Add newly durable payloads to the recent cache and evict the oldest over the caps."""
        self.recent.extend(payloads)
        self.recent_bytes += sum(len(p) for p in payloads)
        while self.recent and (
            len(self.recent) > _CACHE_RECORDS_MAX or self.recent_bytes > _CACHE_BYTES_MAX
        ):
            self.recent_bytes -= len(self.recent.popleft())
            self.recent_start += 1


class LocalLog(LocalLogWrites, Log):
    """An embedded, durable, single-process log with group commit.

    Args:
        directory: Where the log lives; created if missing.
        partitions: The partition count. Fixed when the directory is first created; opening it
            again with another count raises ``LogError``.
        segment_bytes: Size after which a partition starts a new segment file. Smaller segments
            let ``trim`` free space sooner.
        supervisor: Runs the writer task (the node's: a failed write is logged with its
            traceback, counted, shown in health and the writer restarted with backoff; while the
            log refuses appends after a failed write, it stays failing). Without one the log
            keeps its own writer task, which logs a failed write and ends.

    ``trim`` deletes whole segments below the trim point; reads below the trim point raise
    ``LogError``. The trim point itself is not persisted: after a restart it is the first LSN of
    the oldest remaining segment, so reads between that and an earlier ``trim`` succeed again.
    """

    def __init__(
        self,
        directory: Path,
        partitions: int,
        *,
        segment_bytes: int = 64 << 20,
        sync_file: Callable[[int], None] | None = None,
        supervisor: Supervisor | None = None,
        share_fsync_with: LocalLog | None = None,
    ) -> None:
        """Each commit round's files are made durable (fdatasync) by a child process
        (``runtime.log.syncers``), this log's own or, with ``share_fsync_with``, that other
        log's (a node's two logs share one); ``sync_file`` replaces it with threads of this
        process that call ``sync_file(fd)``: a seam for tests that hold, count or fail fsyncs."""
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        self._directory = Path(directory)
        self._meter = AppendMeter(self._directory.name)
        self._partition_count = partitions
        self._segment_bytes = segment_bytes
        # Started with the first round that needs it; a round's files are synced at once.
        self._syncer: Syncer
        if sync_file is not None:
            self._syncer = ThreadSyncer(sync_file)
        elif share_fsync_with is not None and isinstance(share_fsync_with._syncer, FsyncProcess):
            self._syncer = share_fsync_with._syncer.share()
        else:
            self._syncer = FsyncProcess(f"log {self._directory}")
        self._round_cancelled = False
        self._parts: list[_Partition] = []
        self._lock_fd: int | None = None
        self._queue: list[_Append] = []
        self._work_ready = asyncio.Event()
        self._supervisor = supervisor
        self._writer: asyncio.Task[None] | None = None
        self._supervised_writer: SupervisedTask | None = None
        self._writer_ended = asyncio.Event()
        # Set when the writer was cancelled (a supervisor's shutdown): nothing commits any more.
        self._writer_cancelled = False
        self._started = False
        self._closing = False
        self._closed = asyncio.Event()
        # Set when a write failed midway: the files may end in a partial frame, so nothing more
        # is appended until a restart truncates it.
        self._failure: LogError | None = None

    @property
    def partitions(self) -> int:
        """The number of partitions."""
        return self._partition_count

    @property
    def fsync_pid(self) -> int | None:
        """The process id of the log's fsync process (None before its first round, once it
        ended, and with a ``sync_file`` seam)."""
        return self._syncer.pid if isinstance(self._syncer, FsyncProcess) else None

    async def start(self) -> None:
        """Open (or create) the directory, recover every partition and start the writer.

        Recovery truncates a torn or corrupt tail of each partition's active segment; damage
        anywhere else is not a crash artefact and raises ``LogError``.
        """
        if self._started or self._closing:
            raise LogError("LocalLog.start() called twice or after close()")
        self._started = True
        try:
            self._lock_fd, segments = await asyncio.to_thread(
                open_directory_sync, self._directory, self._partition_count
            )
        except OSError as exc:
            raise LogError(f"cannot open log directory {self._directory}: {exc}") from exc
        for index, segs in enumerate(segments):
            last = segs[-1]
            self._parts.append(
                _Partition(
                    index=index,
                    path=last.path.parent,
                    segments=segs,
                    bases=[s.base_lsn for s in segs],
                    end_lsn=last.base_lsn + len(last.positions),
                    trim_lsn=segs[0].base_lsn,
                    recent_start=last.base_lsn + len(last.positions),
                )
            )
        if self._supervisor is None:
            self._writer = asyncio.create_task(self._run_own_writer(), name="cairn-locallog-writer")
        else:
            # The task's kind (its metric label) is the part after the last "/".
            name = f"{self._directory.name}/local-log-writer"
            self._supervised_writer = self._supervisor.spawn(name, self._run_writer)
            self._supervised_writer.add_done_callback(lambda _: self._writer_ended.set())

    async def close(self) -> None:
        """Finish queued appends, end readers and release files. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            self._work_ready.set()
            if self._writer is not None:
                await self._writer
            elif self._supervised_writer is not None:
                # It returns once the queue is empty (a restart pending after a failure returns
                # at once); a supervisor's shutdown may have stopped it already.
                await self._writer_ended.wait()
        finally:
            # The writer is done (a round in flight is always waited for, even by a cancelled
            # writer task): no file is in use.
            for part in self._parts:
                part.notify()
                for seg in part.segments:
                    if seg.wfd is not None:
                        os.close(seg.wfd)
                        seg.wfd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
            await self._syncer.close()
            self._closed.set()

    async def append(
        self, partition: int, records: Sequence[bytes], keys: Sequence[bytes] | None = None
    ) -> int:
        """Append ``records`` contiguously and return the LSN of the last one, once fsynced.

        ``keys`` are checked and not stored: this log never compacts (README "Kafka").
        If the caller is cancelled the records may still be written.
        """
        self._check_partition(partition)
        if not records:
            raise ValueError("append needs at least one record")
        if keys is not None and len(keys) != len(records):
            raise ValueError(f"{len(keys)} keys for {len(records)} records")
        payloads = [bytes(r) for r in records]
        if any(len(p) > RECORD_BYTES_MAX for p in payloads):
            raise ValueError(f"a record is larger than {RECORD_BYTES_MAX} bytes")
        self._check_usable()
        if self._failure is not None:
            raise LogError("an earlier write failed; restart the log") from self._failure
        if self._writer_cancelled:
            raise LogError("the log writer stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._queue.append(_Append(partition, payloads, future))
        self._work_ready.set()
        started = loop.time()
        last = await future
        self._meter.observe(loop.time() - started, len(payloads))
        return last

    async def read(
        self, partition: int, from_lsn: int, hint: ReadHint | None = None
    ) -> AsyncIterator[list[LogRecord]]:
        """Yield durable records from ``from_lsn`` on, then wait for new ones until close.

        ``from_lsn`` may be at most ``tail(partition)``; reading below the trim point raises
        ``LogError``. ``hint`` is ignored: records are read from the files when taken, nothing
        is fetched ahead.
        """
        self._check_partition(partition)
        if from_lsn < 0:
            raise ValueError(f"from_lsn must be >= 0, got {from_lsn}")
        self._check_usable()
        part = self._parts[partition]
        if from_lsn > part.end_lsn:
            raise LogError(f"read from {from_lsn} beyond the tail {part.end_lsn} of {partition}")
        lsn = from_lsn
        while not self._closing:
            if lsn < part.trim_lsn:
                raise LogError(f"LSN {lsn} of partition {partition} is below the trim point")
            if lsn < part.end_lsn:
                batch = await self._read_batch(part, lsn)
                lsn += len(batch)
                yield batch
            else:
                await part.changed.wait()

    async def tail(self, partition: int) -> int:
        """The number of durable records ever appended to ``partition``."""
        self._check_partition(partition)
        self._check_usable()
        return self._parts[partition].end_lsn

    async def first_lsn(self, partition: int) -> int:
        """The trim point (after a restart: the first LSN of the oldest kept segment)."""
        self._check_partition(partition)
        self._check_usable()
        return self._parts[partition].trim_lsn

    async def trim(self, partition: int, upto_lsn: int) -> None:
        """Forbid reads below ``upto_lsn`` and delete the segments wholly below it.

        The active segment is never deleted, so some trimmed records may stay on disk.
        """
        self._check_partition(partition)
        self._check_usable()
        part = self._parts[partition]
        upto_lsn = min(upto_lsn, part.end_lsn)
        if upto_lsn <= part.trim_lsn:
            return
        part.trim_lsn = upto_lsn
        doomed: list[Segment] = []
        while len(part.segments) > 1 and part.segments[1].base_lsn <= upto_lsn:
            doomed.append(part.segments.pop(0))
            part.bases.pop(0)
        if doomed:
            try:
                await asyncio.to_thread(delete_segments_sync, part.path, doomed)
            except OSError as exc:
                raise LogError(f"cannot delete trimmed segments of {partition}: {exc}") from exc

    # --- checks -------------------------------------------------------------------------------

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self._partition_count:
            raise ValueError(f"partition {partition} not in [0, {self._partition_count})")

    def _check_usable(self) -> None:
        if self._closing:
            raise LogError("the log is closed")
        if not self._started:
            raise LogError("the log is not started")

    # --- reads --------------------------------------------------------------------------------

    async def _read_batch(self, part: _Partition, lsn: int) -> list[LogRecord]:
        """Up to one capped batch from ``lsn`` (which must be durable and not trimmed)."""
        if lsn >= part.recent_start:
            payloads = _take_capped(_recent_from(part.recent, lsn - part.recent_start))
        else:
            seg = part.segments[bisect.bisect_right(part.bases, lsn) - 1]
            index = lsn - seg.base_lsn
            count = _capped_count(seg, index, min(len(seg.positions) - index, part.end_lsn - lsn))
            offset = seg.positions[index]
            length = seg.end_of(index + count) - offset
            try:
                payloads = await asyncio.to_thread(
                    read_frames_sync, seg.path, offset, length, count
                )
            except FileNotFoundError as exc:
                raise LogError(f"LSN {lsn} of {part.index} was trimmed while reading") from exc
            except OSError as exc:
                raise LogError(f"cannot read partition {part.index}: {exc}") from exc
        return [LogRecord(lsn=lsn + i, payload=p) for i, p in enumerate(payloads)]


# --- helpers (pure) ----------------------------------------------------------


def _recent_from(recent: collections.deque[bytes], skip: int) -> Iterable[bytes]:
    """The cached payloads from index ``skip`` on. A tailing reader wants the newest few of a
    full cache: taken from the right end, they cost their own count rather than a walk over the
    hundreds before them (issue 10: that walk was 2% of the event loop under load)."""
    newer = len(recent) - skip
    if newer > skip:
        return islice(recent, skip, None)
    wanted = list(islice(reversed(recent), newer))
    wanted.reverse()
    return wanted


def _take_capped(payloads: Iterable[bytes]) -> list[bytes]:
    """The first payloads within the batch caps (always at least one)."""
    out: list[bytes] = []
    total = 0
    for payload in payloads:
        if out and (len(out) >= _BATCH_RECORDS_MAX or total + len(payload) > _BATCH_BYTES_MAX):
            break
        out.append(payload)
        total += len(payload) + HEADER.size
    return out


def _capped_count(seg: Segment, index: int, available: int) -> int:
    """How many records from ``index`` (at most ``available``) fit in one batch."""
    hi = index + min(available, _BATCH_RECORDS_MAX)
    start = seg.positions[index]
    if seg.end_of(hi) - start <= _BATCH_BYTES_MAX:
        return hi - index
    # positions[j] is where record j - 1 ends: keep the records that end within the cap.
    first_over = bisect.bisect_right(seg.positions, start + _BATCH_BYTES_MAX, index + 1, hi)
    return max(1, first_over - index - 1)
