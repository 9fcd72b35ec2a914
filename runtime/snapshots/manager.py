"""Taking, restoring and trimming behind partition snapshots (DESIGN §8).

- **Taking.** The leader of a partition snapshots it every ``interval_records`` applied records
  (and on demand). Only the leader writes: it is caught up by definition, and one writer per
  partition keeps the repository free of duplicates. The rows are read synchronously between two
  batches (apply is synchronous too, so no commit interleaves and the copy is consistent with one
  ``applied_lsn``); encoding, compression and the upload run off the apply path.
- **Restoring.** Before a partition worker applies anything, ``restore_partition`` checks the
  store against the log: a partition with no local state, or whose ``applied_lsn`` is below the
  log's first readable record, gets the newest valid snapshot (newest first; a corrupt one is
  logged and skipped) and then replays only the suffix.
- **Trimming.** After a snapshot is stored and old ones pruned (the last two are kept), the log is
  trimmed below the *older* kept snapshot: each kept snapshot then still has its whole suffix in
  the log, so a damaged newest snapshot falls back to the previous one rather than to nothing.
  In a cluster the trim point is further bounded by the applied positions the nodes publish in
  the metadata log (``TrimBound``: the lowest over the nodes that reported recently), so that no
  live replica is pushed into a restore it did not need. A node that was away longer finds its
  store below the log's start and restores from a snapshot: trimming never costs correctness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from partition_processor.snapshot import (
    Snapshot,
    SnapshotCorrupt,
    SnapshotHeader,
    decode_snapshot,
    encode_snapshot,
    partition_rows,
    restore_into,
)
from partition_processor.tables import Store, read_fsm
from runtime.clock import now_ms
from runtime.log import Log, LogError
from runtime.metrics import (
    RECORDS_REPLAY_SKIPPED,
    SNAPSHOT_RESTORES,
    SNAPSHOTS_CORRUPT,
    SNAPSHOTS_TAKEN,
)
from runtime.snapshots.repository import (
    KEEP_PER_PARTITION,
    Repository,
    RepositoryError,
    SnapshotRef,
)

log = logging.getLogger(__name__)

# The lowest applied position, over the nodes that apply a partition, below which it may be
# trimmed (None: no bound known, do not trim).
TrimBound = Callable[[int], int | None]


class SnapshotError(Exception):
    """A snapshot could not be taken or restored (the message says why)."""


async def restore_partition(
    store: Store,
    repository: Repository,
    partition: int,
    *,
    log_start: int,
    log_end: int,
    partitions: int,
) -> SnapshotHeader | None:
    """Bring a partition with no (or too old) local state to the newest valid snapshot.

    Returns the restored snapshot's header, or None when the store is kept as it is (it has
    state the log can continue, or there is no usable snapshot and the log starts at 0).
    ``log_start``/``log_end`` are the log's first readable LSN and its tail: a snapshot past the
    tail belongs to another log (a reused repository) and is skipped.
    Raises ``SnapshotError`` when the store is behind ``log_start`` and no valid snapshot covers
    the gap: replaying would silently skip records.
    """
    local = read_fsm(store, partition).applied_lsn
    behind = local < log_start - 1
    if local >= 0 and not behind:
        return None
    try:
        refs = await repository.list(partition)
    except RepositoryError as exc:
        if behind:
            raise SnapshotError(f"partition {partition}: {exc}") from exc
        log.warning("partition %d: snapshot repository unavailable (%s); replaying", partition, exc)
        return None
    for ref in refs:
        if ref.applied_lsn <= local:
            break  # this and every older one is not ahead of the store
        if ref.applied_lsn >= log_end:
            log.error(
                "partition %d: snapshot %s is past the log's tail %d (a snapshot of another "
                "log?); skipped",
                partition,
                ref.name,
                log_end,
            )
            continue
        if ref.applied_lsn < log_start - 1:
            log.warning(
                "partition %d: snapshot at %d is below the log start %d; older ones too",
                partition,
                ref.applied_lsn,
                log_start,
            )
            break
        snapshot = await _load(repository, ref, partition, partitions)
        if snapshot is None:
            continue
        await asyncio.to_thread(restore_into, store, partition, snapshot)
        SNAPSHOT_RESTORES.inc()
        RECORDS_REPLAY_SKIPPED.inc(snapshot.header.applied_lsn - local)
        log.info(
            "partition %d: restored snapshot %s (applied_lsn %d, %d rows); replaying from %d",
            partition,
            ref.name,
            snapshot.header.applied_lsn,
            snapshot.header.rows,
            snapshot.header.applied_lsn + 1,
        )
        return snapshot.header
    if behind:
        raise SnapshotError(
            f"partition {partition}: the store is at {local} but the log starts at {log_start}, "
            f"and no valid snapshot in {repository.url} covers the gap"
        )
    if refs:
        log.warning("partition %d: no valid snapshot; replaying the log from %d", partition, 0)
    return None


async def _load(
    repository: Repository, ref: SnapshotRef, partition: int, partitions: int
) -> Snapshot | None:
    """The decoded snapshot, or None (logged) if it is unreadable, corrupt or foreign."""
    try:
        data = await repository.get(ref)
    except RepositoryError as exc:
        log.warning("partition %d: cannot fetch snapshot %s: %s", partition, ref.name, exc)
        return None
    try:
        snapshot = await asyncio.to_thread(decode_snapshot, data)
    except SnapshotCorrupt as exc:
        SNAPSHOTS_CORRUPT.inc()
        log.error(
            "partition %d: snapshot %s in %s is corrupt (%s); falling back to an older snapshot "
            "or a log replay",
            partition,
            ref.name,
            repository.url,
            exc,
        )
        return None
    header = snapshot.header
    if header.partition != partition or header.partitions != partitions:
        log.error(
            "partition %d: snapshot %s is of partition %d of %d (this log has %d); skipped",
            partition,
            ref.name,
            header.partition,
            header.partitions,
            partitions,
        )
        return None
    return snapshot


class SnapshotInfo(msgspec.Struct, frozen=True):
    partition: int
    applied_lsn: int
    name: str
    size: int
    trimmed_below: int | None


class Snapshotter:
    """Takes this node's snapshots, prunes old ones and trims the log behind them."""

    def __init__(
        self,
        *,
        repository: Repository,
        store: Store,
        log_: Log,
        partitions: int,
        node_id: str,
        interval_records: int,
        trim_bound: TrimBound | None = None,
    ) -> None:
        self.repository = repository
        self._store = store
        self._log = log_
        self._partitions = partitions
        self._node_id = node_id
        self._interval = interval_records
        self._trim_bound = trim_bound
        # Position of the last snapshot taken (or restored, or found at start) per partition.
        self._last: dict[int, int] = {}
        self._running: dict[int, asyncio.Task[SnapshotInfo]] = {}

    def note_position(self, partition: int, applied_lsn: int) -> None:
        """The store is known to be snapshotted at ``applied_lsn`` (restored, or at start)."""
        self._last[partition] = max(self._last.get(partition, -1), applied_lsn)

    def after_batch(self, partition: int, applied_lsn: int, is_leader: bool) -> None:
        """Called by the partition worker after each committed batch: snapshot when due."""
        if self._interval <= 0 or not is_leader or partition in self._running:
            return
        if applied_lsn - self._last.get(partition, -1) >= self._interval:
            self.take(partition)

    def take(self, partition: int) -> asyncio.Task[SnapshotInfo]:
        """Snapshot ``partition`` now (its rows are read before this returns)."""
        running = self._running.get(partition)
        if running is not None:
            return running
        # Synchronous on purpose: no batch can commit between the reads, so the rows are one
        # consistent state at the FSM row's applied_lsn.
        rows = partition_rows(self._store, partition)
        task = asyncio.create_task(self._write(partition, rows), name=f"cairn-snapshot-{partition}")
        self._running[partition] = task
        task.add_done_callback(lambda t: self._finished(partition, t))
        return task

    def _finished(self, partition: int, task: asyncio.Task[SnapshotInfo]) -> None:
        self._running.pop(partition, None)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("partition %d: snapshot failed: %s", partition, exc)

    async def _write(self, partition: int, rows: list[tuple[bytes, bytes]]) -> SnapshotInfo:
        header, data = await asyncio.to_thread(
            encode_snapshot,
            partition,
            self._partitions,
            rows,
            node=self._node_id,
            created_ms=now_ms(),
        )
        if header.applied_lsn < 0:
            raise SnapshotError(f"partition {partition} has applied nothing yet")
        ref = await self.repository.put(partition, header.applied_lsn, data)
        self.note_position(partition, header.applied_lsn)
        SNAPSHOTS_TAKEN.inc()
        kept = (await self.repository.list(partition))[:KEEP_PER_PARTITION]
        await self.repository.prune(partition)
        trimmed = await self._trim_behind(partition, kept)
        log.info(
            "partition %d: snapshot %s (%d rows, %d bytes) at applied_lsn %d",
            partition,
            ref.name,
            header.rows,
            len(data),
            header.applied_lsn,
        )
        return SnapshotInfo(partition, header.applied_lsn, ref.name, ref.size, trimmed)

    async def _trim_behind(self, partition: int, kept: list[SnapshotRef]) -> int | None:
        """Trim below the oldest kept snapshot (bounded by the replicas' positions)."""
        if len(kept) < KEEP_PER_PARTITION:
            return None
        upto = kept[-1].applied_lsn + 1
        if self._trim_bound is not None:
            bound = self._trim_bound(partition)
            if bound is None:
                return None
            upto = min(upto, bound + 1)
        try:
            await self._log.trim(partition, upto)
        except LogError as exc:
            log.warning("partition %d: trim below %d failed: %s", partition, upto, exc)
            return None
        return upto

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.repository.close()
