"""A caught-up standby applies in paced batches (``NodeConfig.standby_apply_interval_ms``,
issue 7: CPU per node), and a claim ends its wait at once (failover is not delayed by it).

Real PartitionWorkers on a real local log and RocksDB; the records are other nodes'
leadership announcements, each a new epoch, so every applied batch calls ``on_leader_change``
exactly once: the calls count the batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from partition_processor.commands import AnnounceLeader, Envelope, IngressSource, encode_envelope
from partition_processor.store_rocksdb import RocksDBStore
from runtime.clock import now_ms
from runtime.log import KafkaLog, LocalLog, Log
from runtime.worker.partition import PartitionWorker
from tests.support.broker import unique_topic
from tests.support.worker_parts import worker_parts

pytestmark = pytest.mark.timeout(120)

NODE = "node-b/1"


def _announcement(epoch: int) -> bytes:
    return encode_envelope(
        Envelope(IngressSource("node-a/1"), now_ms(), AnnounceLeader(epoch, "node-a/1"))
    )


@asynccontextmanager
async def _standby(
    tmp_path: Path, log: Log, pace_s: float, batches: list[int]
) -> AsyncIterator[PartitionWorker]:
    async with worker_parts(tmp_path, RocksDBStore(tmp_path / "store")) as parts:
        worker = parts.worker(
            0, log, NODE, owned=False, on_leader_change=batches.append, standby_pace_s=pace_s
        )
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.synced.wait(), timeout=30)
            yield worker
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def _applied(worker: PartitionWorker, lsn: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.processor.fsm.applied_lsn < lsn:
        assert time.monotonic() < deadline, f"applied {worker.processor.fsm.applied_lsn} < {lsn}"
        await asyncio.sleep(0.01)


async def test_a_standby_applies_records_arriving_one_by_one_in_paced_batches(
    tmp_path: Path,
) -> None:
    log = LocalLog(tmp_path / "log", 1)
    await log.start()
    batches: list[int] = []
    pace_s = 0.5
    records = 30
    try:
        async with _standby(tmp_path, log, pace_s, batches) as worker:
            started = time.monotonic()
            for epoch in range(1, records + 1):
                await log.append(0, [_announcement(epoch)])
                await asyncio.sleep(0.02)
            await _applied(worker, records - 1, timeout_s=30)
            elapsed = time.monotonic() - started
            assert not worker.is_leader
            assert worker.processor.fsm.leader_epoch == records
    finally:
        await log.close()
    # One batch per wait at most (plus the first, before any wait), however slow the machine:
    # unpaced, each record arriving 20 ms after the last is a batch of its own.
    assert len(batches) <= elapsed / pace_s + 2, (len(batches), elapsed)
    assert len(batches) < records / 2


async def _claim_ends_the_wait(tmp_path: Path, log: Log) -> None:
    batches: list[int] = []
    try:
        # A wait far longer than the test's patience: only the claim can end it in time.
        async with _standby(tmp_path, log, 600.0, batches) as worker:
            await log.append(0, [_announcement(1)])
            await _applied(worker, 0, timeout_s=30)
            await asyncio.sleep(0.2)  # the worker is in its wait now
            # Records that arrive during the wait (on Kafka its partition is left out of the
            # fetches meanwhile: ReadHint) are applied once the claim ends it, before it leads.
            await log.append(0, [_announcement(2), _announcement(3)])
            worker.claim()
            await asyncio.wait_for(worker.caught_up.wait(), timeout=30)
            assert worker.is_leader
            assert worker.processor.fsm.leader_epoch == 4
    finally:
        await log.close()


async def test_a_claim_ends_a_standby_wait_at_once(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "log", 1)
    await log.start()
    await _claim_ends_the_wait(tmp_path, log)


async def test_a_claim_ends_a_standby_wait_at_once_on_kafka(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    log = KafkaLog(
        kafka_bootstrap, unique_topic("pace"), 1, fetch_max_wait=timedelta(milliseconds=10)
    )
    await log.start()
    await _claim_ends_the_wait(tmp_path, log)


async def test_a_standby_with_records_waiting_applies_them_without_waiting(tmp_path: Path) -> None:
    """A backlog comes in full reads (256 records): the standby waits after none of them, so
    pacing never caps how fast a standby can apply (unpaced after each read, 2,000 records at one
    5 s wait per read would take 40 s)."""
    log = LocalLog(tmp_path / "log", 1)
    await log.start()
    batches: list[int] = []
    backlog = 2000
    try:
        async with _standby(tmp_path, log, 5.0, batches) as worker:
            await log.append(0, [_announcement(1)])
            await _applied(worker, 0, timeout_s=30)  # now in its 5 s wait
            await log.append(0, [_announcement(epoch) for epoch in range(2, backlog + 2)])
            await _applied(worker, backlog, timeout_s=25)
            assert worker.processor.fsm.leader_epoch == backlog + 1
    finally:
        await log.close()
