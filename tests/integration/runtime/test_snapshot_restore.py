"""Restoring a partition from a snapshot into real RocksDB, then replaying only the log suffix,
gives exactly the store a full replay gives; trimming behind snapshots; corrupt snapshots."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from partition_processor.commands import (
    AnnounceLeader,
    Command,
    End,
    Envelope,
    IngressSink,
    IngressSource,
    Invoke,
    InvokerEffect,
    JournalAppend,
    LeaderDedup,
    LeaderSource,
    RetryPolicy,
    Target,
    encode_envelope,
)
from partition_processor.journal import Output, SetState, Sleep, Success
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.snapshot import encode_snapshot, partition_rows
from partition_processor.store_rocksdb import RocksDBStore
from partition_processor.tables import read_fsm
from runtime.clock import now_ms
from runtime.log import LocalLog, Log, LogError
from runtime.metadata import Registry
from runtime.metrics import RECORDS_APPLIED
from runtime.snapshots.manager import SnapshotError, Snapshotter, restore_partition
from runtime.snapshots.repository import FileRepository
from runtime.supervisor import Supervisor
from tests.support.worker_parts import worker_parts

pytestmark = pytest.mark.timeout(120)

NODE = "node-a/1"
PARTITIONS = 2


class Records:
    """Log records of one partition: counter invocations over a few keys, each setting state,
    some sleeping (timer rows), some left running (locks, inbox rows)."""

    def __init__(self) -> None:
        self._seq = itertools.count()
        self.now_ms = 1_000

    def _envelope(self, command: Command, leader: bool) -> bytes:
        if leader:
            return encode_envelope(
                Envelope(
                    LeaderSource(0, 1, NODE),
                    self.now_ms,
                    command,
                    LeaderDedup(1, next(self._seq)),
                )
            )
        return encode_envelope(Envelope(IngressSource(NODE), self.now_ms, command))

    def announce(self) -> bytes:
        return self._envelope(AnnounceLeader(1, NODE), leader=False)

    def invocation(self, i: int, *, finish: bool) -> list[bytes]:
        self.now_ms += 10
        inv = f"inv-{i}"
        target = Target("Counter", "add", "virtual_object", "exclusive", key=f"k{i % 7}")
        out = [
            self._envelope(
                Invoke(
                    inv, target, b"1", sink=IngressSink(NODE, f"r{i}"), retry_policy=RetryPolicy()
                ),
                leader=False,
            ),
            self._envelope(InvokerEffect(inv, 1, JournalAppend(1, SetState("n", b"%d" % i))), True),
        ]
        if i % 5 == 0:
            sleep = Sleep(wake_up_ms=10_000_000 + i)
            out.append(self._envelope(InvokerEffect(inv, 1, JournalAppend(2, sleep)), True))
        elif finish:
            out.append(
                self._envelope(InvokerEffect(inv, 1, JournalAppend(2, Output(Success(b"1")))), True)
            )
            out.append(self._envelope(InvokerEffect(inv, 1, End()), True))
        return out


async def _fill(log: Log, count: int) -> int:
    records = Records()
    payloads = [records.announce()]
    for i in range(count):
        payloads += records.invocation(i, finish=i < count - 10)
    for start in range(0, len(payloads), 50):
        await log.append(0, payloads[start : start + 50])
    return len(payloads)


async def _replay(store: RocksDBStore, log: Log, until: int | None = None) -> int:
    """Apply partition 0 from the store's position to the tail (or through ``until``), in
    batches of 32 as the partition worker does; return how many records were applied."""
    processor = PartitionProcessor(store, 0, NODE)
    last = (await log.tail(0)) - 1 if until is None else until
    applied = 0
    if processor.fsm.applied_lsn >= last:
        return 0
    reader = log.read(0, processor.fsm.applied_lsn + 1)
    try:
        async for batch in reader:
            entries = [LogEntry(r.lsn, r.payload) for r in batch if r.lsn <= last]
            for start in range(0, len(entries), 32):
                processor.apply_batch(entries[start : start + 32])
            applied += len(entries)
            if processor.fsm.applied_lsn >= last:
                return applied
    finally:
        await reader.aclose()  # type: ignore[attr-defined]
    return applied


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[Log]:
    opened = LocalLog(tmp_path / "log", PARTITIONS, segment_bytes=4096)
    await opened.start()
    yield opened
    await opened.close()


async def _snapshot(store: RocksDBStore, repo: FileRepository, created_ms: int = 1) -> int:
    header, data = encode_snapshot(
        0, PARTITIONS, partition_rows(store, 0), node=NODE, created_ms=created_ms
    )
    await repo.put(0, header.applied_lsn, data)
    return header.applied_lsn


async def test_restore_then_suffix_replay_equals_full_replay(tmp_path: Path, log: Log) -> None:
    total = await _fill(log, 300)
    repo = FileRepository(tmp_path / "snaps")
    full = RocksDBStore(tmp_path / "full")
    await _replay(full, log, until=total // 2)
    at = await _snapshot(full, repo)
    await _replay(full, log)
    assert read_fsm(full, 0).applied_lsn == total - 1

    fresh = RocksDBStore(tmp_path / "fresh")
    header = await restore_partition(
        fresh, repo, 0, log_start=0, log_end=await log.tail(0), partitions=PARTITIONS
    )
    assert header is not None and header.applied_lsn == at
    replayed = await _replay(fresh, log)
    assert replayed == total - 1 - at < total
    assert partition_rows(fresh, 0) == partition_rows(full, 0)
    assert len(partition_rows(full, 0)) > 100
    full.close()
    fresh.close()


async def test_a_store_with_state_the_log_continues_is_not_restored(
    tmp_path: Path, log: Log
) -> None:
    await _fill(log, 50)
    repo = FileRepository(tmp_path / "snaps")
    store = RocksDBStore(tmp_path / "s")
    await _replay(store, log, until=20)
    await _snapshot(store, repo)
    older = RocksDBStore(tmp_path / "older")
    await _replay(older, log, until=5)
    tail = await log.tail(0)
    assert await restore_partition(older, repo, 0, log_start=0, log_end=tail, partitions=2) is None
    assert read_fsm(older, 0).applied_lsn == 5
    store.close()
    older.close()


async def test_corrupt_newest_snapshot_falls_back_to_the_older_one(
    tmp_path: Path, log: Log, caplog: pytest.LogCaptureFixture
) -> None:
    await _fill(log, 200)
    repo = FileRepository(tmp_path / "snaps")
    full = RocksDBStore(tmp_path / "full")
    await _replay(full, log, until=100)
    older = await _snapshot(full, repo)
    await _replay(full, log, until=400)
    newest = await _snapshot(full, repo)
    await _replay(full, log)
    path = tmp_path / "snaps" / "p00000" / f"{newest:020d}.snap"
    path.write_bytes(path.read_bytes()[:-100])  # truncated

    fresh = RocksDBStore(tmp_path / "fresh")
    with caplog.at_level(logging.ERROR):
        header = await restore_partition(
            fresh, repo, 0, log_start=0, log_end=await log.tail(0), partitions=PARTITIONS
        )
    assert header is not None and header.applied_lsn == older
    assert "is corrupt" in caplog.text and "falling back" in caplog.text
    await _replay(fresh, log)
    assert partition_rows(fresh, 0) == partition_rows(full, 0)

    # Every snapshot corrupt, log untrimmed: a full replay, announced in the log.
    (tmp_path / "snaps" / "p00000" / f"{older:020d}.snap").write_bytes(b"garbage")
    other = RocksDBStore(tmp_path / "other")
    with caplog.at_level(logging.WARNING):
        assert (
            await restore_partition(
                other, repo, 0, log_start=0, log_end=await log.tail(0), partitions=PARTITIONS
            )
            is None
        )
    assert "replaying the log" in caplog.text
    await _replay(other, log)
    assert partition_rows(other, 0) == partition_rows(full, 0)
    for store in (full, fresh, other):
        store.close()


async def test_snapshotter_trims_behind_the_older_snapshot_and_a_stale_store_restores(
    tmp_path: Path, log: Log
) -> None:
    total = await _fill(log, 300)
    segments_before = len(list((tmp_path / "log" / "p0000").glob("*.seg")))
    repo = FileRepository(tmp_path / "snaps")
    store = RocksDBStore(tmp_path / "leader")
    stale = RocksDBStore(tmp_path / "stale")
    await _replay(stale, log, until=30)
    snapshotter = Snapshotter(
        repository=repo,
        store=store,
        log_=log,
        partitions=PARTITIONS,
        node_id=NODE,
        interval_records=0,
    )
    positions = []
    for until in (300, 600, 900):
        await _replay(store, log, until=until)
        info = await snapshotter.take(0)
        positions.append(info.applied_lsn)
    await _replay(store, log)
    assert [r.applied_lsn for r in await repo.list(0)] == positions[:0:-1]  # two kept
    first = await log.first_lsn(0)
    assert first == positions[1] + 1  # trimmed below the older kept snapshot
    segments_after = len(list((tmp_path / "log" / "p0000").glob("*.seg")))
    assert segments_after < segments_before
    with pytest.raises(LogError):
        await _replay(stale, log)  # the stale store's next record is gone

    # The stale store is behind the trim point: it restores, then replays the suffix.
    header = await restore_partition(
        stale, repo, 0, log_start=first, log_end=await log.tail(0), partitions=PARTITIONS
    )
    assert header is not None and header.applied_lsn == positions[-1]
    await _replay(stale, log)
    assert read_fsm(stale, 0).applied_lsn == total - 1
    assert partition_rows(stale, 0) == partition_rows(store, 0)

    # Behind the trim point with no valid snapshot: refuse, never skip records silently.
    for ref in await repo.list(0):
        await repo.delete(ref)
    empty = RocksDBStore(tmp_path / "empty")
    with pytest.raises(SnapshotError, match="no valid snapshot"):
        await restore_partition(
            empty, repo, 0, log_start=first, log_end=await log.tail(0), partitions=PARTITIONS
        )
    await snapshotter.close()
    for s in (store, stale, empty):
        s.close()


async def test_cluster_trim_waits_for_every_reporting_node(tmp_path: Path, log: Log) -> None:
    """Positions published in the (real, local) metadata log bound the trim: a node that has
    applied less holds the trim point back; nodes that stopped reporting do not."""
    await _fill(log, 300)
    metadata = LocalLog(tmp_path / "metadata", 1)
    await metadata.start()
    registry = Registry(metadata)
    supervisor = Supervisor()
    await registry.start(supervisor)
    try:
        assert registry.lowest_applied(0, since_ms=0) is None
        await registry.publish_positions("fast", [2000, 0])
        await registry.publish_positions("slow", [450, 0])
        await registry.wait_applied(await metadata.tail(0) - 1)
        assert registry.lowest_applied(0, since_ms=0) == 450
        assert registry.lowest_applied(0, since_ms=now_ms() + 60_000) is None  # all stale
        # Only the partition's replicas bound it: a node that does not apply it (reporting -1
        # there) is not waited for, and a replica that has not reported holds the trim back.
        await registry.publish_positions("elsewhere", [-1, 0])
        await registry.wait_applied(await metadata.tail(0) - 1)
        assert registry.lowest_applied(0, since_ms=0) == -1
        assert registry.lowest_applied(0, since_ms=0, nodes=["fast", "slow"]) == 450
        assert registry.lowest_applied(0, since_ms=0, nodes=["fast"]) == 2000
        assert registry.lowest_applied(0, since_ms=0, nodes=["fast", "silent"]) is None
        assert registry.lowest_applied(0, since_ms=now_ms() + 60_000, nodes=["fast"]) is None

        store = RocksDBStore(tmp_path / "leader")
        snapshotter = Snapshotter(
            repository=FileRepository(tmp_path / "snaps"),
            store=store,
            log_=log,
            partitions=PARTITIONS,
            node_id=NODE,
            interval_records=0,
            # As a cluster node does: only the partition's replicas ("elsewhere" is none).
            trim_bound=lambda p: registry.lowest_applied(p, since_ms=0, nodes=["fast", "slow"]),
        )
        for until in (600, 900):
            await _replay(store, log, until=until)
            await snapshotter.take(0)
        # Unbounded, the trim point would be 601 (above the older snapshot); "slow" is at 450.
        assert await log.first_lsn(0) == 451
        await registry.publish_positions("slow", [1000, 0])
        await registry.wait_applied(await metadata.tail(0) - 1)
        await _replay(store, log, until=1100)
        await snapshotter.take(0)
        assert await log.first_lsn(0) == 901  # below the older kept snapshot (900)
        await snapshotter.close()
        store.close()
    finally:
        await registry.stop()
        await supervisor.shutdown()
        await metadata.close()


async def test_a_worker_restored_to_the_tail_claims_and_leads(tmp_path: Path, log: Log) -> None:
    """The snapshot holds the whole log: no batch follows the restore, so the claim must compare
    the tail with the restored position (it asks for the tail only after the restore) rather
    than wait for an ``on_batch`` that never comes."""
    await _fill(log, 0)
    repo = FileRepository(tmp_path / "snaps")
    source = RocksDBStore(tmp_path / "source")
    await _replay(source, log)
    assert await _snapshot(source, repo) == await log.tail(0) - 1
    source.close()

    async with worker_parts(tmp_path, RocksDBStore(tmp_path / "fresh")) as parts:
        snapshotter = Snapshotter(
            repository=repo,
            store=parts.store,
            log_=log,
            partitions=PARTITIONS,
            node_id=NODE,
            interval_records=0,
        )
        parts.closers.append(snapshotter.close)
        worker = parts.worker(0, log, NODE, snapshots=snapshotter)
        applied_before = RECORDS_APPLIED._value.get()
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.caught_up.wait(), timeout=30)
            assert worker.is_leader
            fsm = read_fsm(parts.store, 0)
            assert fsm.leader_epoch == 2 and fsm.applied_lsn == 1
            assert RECORDS_APPLIED._value.get() - applied_before == 1  # its own announcement only
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
