"""The Log contract (runtime/log/base.py), run against every backend.

``log_factory`` builds logs of one backend; ``reopen`` closes a log and opens the same storage
again (LocalLog: the same directory; KafkaLog: the same topic on the session broker), which is
how these tests restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from runtime.log import KafkaLog, LocalLog, Log, LogError, LogRecord, segments
from runtime.log.syncers import FsyncProcess
from tests.support.broker import unique_topic

pytestmark = pytest.mark.timeout(60)

PARTITIONS = 4


class LogFactory:
    """Opens logs of one backend on one storage location and closes them all at the end."""

    def __init__(self, backend: str, make: Callable[[int], Log]) -> None:
        self.backend = backend
        self._make = make
        self._opened: list[Log] = []

    async def open(self, partitions: int = PARTITIONS) -> Log:
        log = self._make(partitions)
        self._opened.append(log)
        await log.start()
        return log

    async def reopen(self, log: Log) -> Log:
        await log.close()
        return await self.open(log.partitions)

    async def close_all(self) -> None:
        for log in self._opened:
            await log.close()


@pytest.fixture(params=["local", "kafka"])
async def log_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogFactory]:
    if request.param == "local":
        factory = LogFactory("local", lambda n: LocalLog(tmp_path / "log", n))
    else:
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        topic = unique_topic("conformance")
        factory = LogFactory(
            "kafka",
            # Tansu answers a fetch only when fetch_max_wait expires (DESIGN §10): keep it short.
            lambda n: KafkaLog(bootstrap, topic, n, fetch_max_wait=timedelta(milliseconds=10)),
        )
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture
async def log(log_factory: LogFactory) -> Log:
    return await log_factory.open()


async def collect(log: Log, partition: int, from_lsn: int, count: int) -> list[LogRecord]:
    """Read exactly ``count`` records (or fail after 10 s), checking batch invariants."""
    out: list[LogRecord] = []
    reader = log.read(partition, from_lsn)
    try:
        async with asyncio.timeout(10):
            async for batch in reader:
                assert batch, "read yielded an empty batch"
                out.extend(batch)
                if len(out) >= count:
                    break
    finally:
        await reader.aclose()  # type: ignore[attr-defined]
    assert [r.lsn for r in out] == list(range(from_lsn, from_lsn + len(out)))
    return out[:count]


def payloads(records: list[LogRecord]) -> list[bytes]:
    return [r.payload for r in records]


# --- appends and LSNs ---------------------------------------------------------------------------


async def test_append_returns_last_lsn_and_lsns_are_contiguous_from_zero(log: Log) -> None:
    assert await log.append(0, [b"a"]) == 0
    assert await log.append(0, [b"b", b"c", b"d"]) == 3
    assert await log.append(0, [b"e"]) == 4
    assert await log.append(1, [b"x", b"y"]) == 1  # partitions count separately
    assert payloads(await collect(log, 0, 0, 5)) == [b"a", b"b", b"c", b"d", b"e"]
    assert payloads(await collect(log, 1, 0, 2)) == [b"x", b"y"]


async def test_keyed_appends_read_back_like_unkeyed_ones(log: Log) -> None:
    """Keys (the metadata's, for a compacting log) never change what is read back; one key per
    record, else ValueError and nothing appended."""
    assert await log.append(0, [b"a", b"b"], [b"k1", b"k2"]) == 1
    assert await log.append(0, [b"c"]) == 2
    with pytest.raises(ValueError):
        await log.append(0, [b"d", b"e"], [b"k1"])
    assert await log.append(0, [b"f"], [b"k1"]) == 3
    assert payloads(await collect(log, 0, 0, 4)) == [b"a", b"b", b"c", b"f"]


async def test_empty_append_and_bad_partition_are_rejected(log: Log) -> None:
    with pytest.raises(ValueError):
        await log.append(0, [])
    with pytest.raises(ValueError):
        await log.append(PARTITIONS, [b"x"])
    with pytest.raises(ValueError):
        await log.tail(-1)


async def test_read_from_start_and_from_the_middle(log: Log) -> None:
    records = [b"r%d" % i for i in range(10)]
    await log.append(2, records[:3])
    for record in records[3:]:
        await log.append(2, [record])
    assert payloads(await collect(log, 2, 0, 10)) == records
    assert payloads(await collect(log, 2, 5, 5)) == records[5:]
    # From inside a multi-record append:
    assert payloads(await collect(log, 2, 2, 3)) == records[2:5]


async def test_tailing_read_receives_later_appends(log: Log) -> None:
    reader = asyncio.create_task(collect(log, 1, 0, 6))
    await asyncio.sleep(0.05)  # the reader is now waiting at the end of an empty partition
    for i in range(3):
        await log.append(1, [b"t%d" % i])
        await asyncio.sleep(0.01)
    await log.append(1, [b"t3", b"t4", b"t5"])
    assert payloads(await reader) == [b"t%d" % i for i in range(6)]


async def test_read_from_the_tail_waits_for_the_next_record(log: Log) -> None:
    await log.append(3, [b"old0", b"old1"])
    reader = asyncio.create_task(collect(log, 3, 2, 1))
    await asyncio.sleep(0.05)
    assert not reader.done()
    await log.append(3, [b"new"])
    assert payloads(await reader) == [b"new"]


async def test_read_beyond_the_tail_is_an_error(log: Log) -> None:
    await log.append(0, [b"a", b"b"])
    with pytest.raises(LogError):
        await collect(log, 0, 3, 1)


async def test_concurrent_appenders_keep_their_order_and_lose_nothing(log: Log) -> None:
    appenders, appends = 20, 50
    placed: dict[tuple[int, int], tuple[int, int]] = {}  # (appender, seq) -> (partition, lsn)

    async def appender(a: int) -> None:
        rng = random.Random(a)
        for seq in range(appends):
            partition = rng.randrange(PARTITIONS)
            lsn = await log.append(partition, [b"%d:%d" % (a, seq)])
            placed[(a, seq)] = (partition, lsn)

    await asyncio.gather(*(appender(a) for a in range(appenders)))

    seen: dict[tuple[int, int], tuple[int, int]] = {}
    for partition in range(PARTITIONS):
        count = await log.tail(partition)
        last_seq: dict[int, int] = {}
        for record in await collect(log, partition, 0, count):
            a, seq = map(int, record.payload.split(b":"))
            assert (a, seq) not in seen, "a record was read twice"
            seen[(a, seq)] = (partition, record.lsn)
            assert seq > last_seq.get(a, -1), "an appender's records were reordered"
            last_seq[a] = seq
    assert seen == placed  # every record exactly once, at the LSN its append returned


async def test_tailing_readers_see_concurrent_appends_in_order(log: Log) -> None:
    appenders, appends = 10, 30

    def partition_of(a: int, seq: int) -> int:
        return (a * 7 + seq * 3) % PARTITIONS

    expected = [0] * PARTITIONS
    for a in range(appenders):
        for seq in range(appends):
            expected[partition_of(a, seq)] += 1
    readers = [asyncio.create_task(collect(log, p, 0, expected[p])) for p in range(PARTITIONS)]
    await asyncio.sleep(0.05)

    async def appender(a: int) -> None:
        for seq in range(appends):
            await log.append(partition_of(a, seq), [b"%d:%d" % (a, seq)])
            if seq % 10 == 0:
                await asyncio.sleep(0.005)  # let readers catch up to the tail now and then

    await asyncio.gather(*(appender(a) for a in range(appenders)))
    for partition, reader in enumerate(readers):
        last_seq: dict[int, int] = {}
        for record in await reader:  # collect() checks LSNs are contiguous from 0
            a, seq = map(int, record.payload.split(b":"))
            assert partition_of(a, seq) == partition
            assert seq > last_seq.get(a, -1)
            last_seq[a] = seq


async def test_multi_record_appends_are_contiguous_under_concurrency(log: Log) -> None:
    async def appender(a: int) -> list[int]:
        lasts = []
        for seq in range(10):
            batch = [b"%d:%d:%d" % (a, seq, i) for i in range(5)]
            lasts.append(await log.append(0, batch))
        return lasts

    results = await asyncio.gather(*(appender(a) for a in range(8)))
    records = await collect(log, 0, 0, 8 * 10 * 5)
    for a, lasts in enumerate(results):
        for seq, last in enumerate(lasts):
            got = payloads(records[last - 4 : last + 1])
            assert got == [b"%d:%d:%d" % (a, seq, i) for i in range(5)]


# --- tail ---------------------------------------------------------------------------------------


async def test_tail_on_empty_and_non_empty_partitions(log_factory: LogFactory) -> None:
    log = await log_factory.open()
    assert [await log.tail(p) for p in range(PARTITIONS)] == [0] * PARTITIONS
    await log.append(1, [b"a"])
    assert await log.tail(1) == 1
    await log.append(1, [b"b", b"c", b"d", b"e", b"f"])  # the last batch holds several records
    assert await log.tail(1) == 6
    assert await log.tail(0) == 0
    # A fresh instance knows nothing from its own appends: the broker/file must say 6.
    log = await log_factory.reopen(log)
    assert await log.tail(1) == 6
    assert await log.tail(2) == 0


# --- restart and close --------------------------------------------------------------------------


async def test_restart_keeps_everything_and_appends_continue(log_factory: LogFactory) -> None:
    log = await log_factory.open()
    await log.append(0, [b"a", b"b"])
    await log.append(3, [b"z"])
    log = await log_factory.reopen(log)
    assert payloads(await collect(log, 0, 0, 2)) == [b"a", b"b"]
    assert payloads(await collect(log, 3, 0, 1)) == [b"z"]
    assert await log.append(0, [b"c"]) == 2
    assert await log.append(3, [b"y", b"x"]) == 2
    log = await log_factory.reopen(log)
    assert payloads(await collect(log, 0, 0, 3)) == [b"a", b"b", b"c"]
    assert payloads(await collect(log, 3, 0, 3)) == [b"z", b"y", b"x"]


async def test_close_ends_a_pending_read(log: Log) -> None:
    await log.append(0, [b"a"])
    received: list[LogRecord] = []

    async def read_all() -> None:
        async for batch in log.read(0, 0):
            received.extend(batch)

    reader = asyncio.create_task(read_all())
    await asyncio.sleep(0.1)  # delivered "a", now waiting for more
    await log.close()
    await asyncio.wait_for(reader, timeout=5)
    assert payloads(received) == [b"a"]


async def test_close_is_idempotent_and_later_calls_fail(log: Log) -> None:
    await log.close()
    await log.close()
    with pytest.raises(LogError):
        await log.append(0, [b"late"])
    with pytest.raises(LogError):
        await log.tail(0)


# --- readers ------------------------------------------------------------------------------------


async def test_concurrent_readers_of_one_partition_at_different_positions(log: Log) -> None:
    await log.append(1, [b"%d" % i for i in range(20)])
    first, second, other = await asyncio.gather(
        collect(log, 1, 0, 20), collect(log, 1, 15, 5), collect(log, 1, 7, 13)
    )
    assert payloads(first) == [b"%d" % i for i in range(20)]
    assert payloads(second) == [b"%d" % i for i in range(15, 20)]
    assert payloads(other) == [b"%d" % i for i in range(7, 20)]


async def test_a_partition_can_be_read_again_after_a_reader_stops(log: Log) -> None:
    await log.append(2, [b"a", b"b", b"c"])
    assert payloads(await collect(log, 2, 1, 1)) == [b"b"]
    assert payloads(await collect(log, 2, 0, 3)) == [b"a", b"b", b"c"]
    await log.append(2, [b"d"])
    assert payloads(await collect(log, 2, 3, 1)) == [b"d"]


async def test_batches_are_capped(log: Log) -> None:
    await log.append(0, [b"x" * 10] * 600)
    await log.append(0, [b"y" * (600 << 10)] * 3)  # 1.8 MiB
    reader = log.read(0, 0)
    sizes: list[tuple[int, int]] = []
    try:
        async with asyncio.timeout(10):
            async for batch in reader:
                sizes.append((len(batch), sum(len(r.payload) for r in batch)))
                if sum(n for n, _ in sizes) >= 603:
                    break
    finally:
        await reader.aclose()  # type: ignore[attr-defined]
    assert all(n <= 256 for n, _ in sizes)
    assert all(b <= (1 << 20) or n == 1 for n, b in sizes)


# --- trim ---------------------------------------------------------------------------------------


async def test_trim_keeps_records_at_and_above_the_trim_point(log_factory: LogFactory) -> None:
    log = await log_factory.open()
    await log.append(0, [b"%d" % i for i in range(10)])
    await log.trim(0, 6)  # best effort on Kafka; must never break what is above it
    assert payloads(await collect(log, 0, 6, 4)) == [b"6", b"7", b"8", b"9"]
    assert await log.tail(0) == 10
    assert await log.append(0, [b"10"]) == 10
    log = await log_factory.reopen(log)
    assert await log.tail(0) == 11
    assert payloads(await collect(log, 0, 8, 3)) == [b"8", b"9", b"10"]


async def test_first_lsn_is_zero_until_trimmed_and_never_above_the_trim_point(
    log_factory: LogFactory,
) -> None:
    log = await log_factory.open()
    assert await log.first_lsn(0) == 0
    await log.append(0, [b"%d" % i for i in range(10)])
    assert await log.first_lsn(0) == 0
    await log.trim(0, 6)
    # Best effort: a broker without DeleteRecords keeps everything (first stays 0); a log that
    # deleted reports where reading can start, and records from there on stay readable.
    first = await log.first_lsn(0)
    assert 0 <= first <= 6
    assert payloads(await collect(log, 0, first, 10 - first)) == [
        b"%d" % i for i in range(first, 10)
    ]
    assert await log.first_lsn(1) == 0  # other partitions are not touched


# --- LocalLog only ------------------------------------------------------------------------------


def _append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _segments(directory: Path, partition: int) -> list[Path]:
    return sorted((directory / f"p{partition:04d}").glob("*.seg"))


@pytest.mark.parametrize(
    "garbage",
    [b"\x00" * 13, b"\xff\xff", b"\x00\x00\x00\x05\x12\x34\x56\x78ab", b"\x00\x00\x00\x01\x00\x00"],
    ids=["zeros", "short-header", "bad-crc", "short-payload"],
)
async def test_local_torn_tail_is_truncated_on_reopen(tmp_path: Path, garbage: bytes) -> None:
    log = LocalLog(tmp_path, 2)
    await log.start()
    await log.append(1, [b"one", b"two"])
    await log.append(1, [b"three"])
    await log.close()
    _append_bytes(_segments(tmp_path, 1)[-1], garbage)  # what a crash mid-write leaves behind

    log = LocalLog(tmp_path, 2)
    await log.start()
    try:
        assert await log.tail(1) == 3
        assert await log.append(1, [b"four"]) == 3
        assert payloads(await collect(log, 1, 0, 4)) == [b"one", b"two", b"three", b"four"]
    finally:
        await log.close()
    log = LocalLog(tmp_path, 2)
    await log.start()
    try:
        assert payloads(await collect(log, 1, 0, 4)) == [b"one", b"two", b"three", b"four"]
    finally:
        await log.close()


async def test_local_damage_before_the_active_segment_is_an_error(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, 1, segment_bytes=64)
    await log.start()
    for i in range(5):
        await log.append(0, [b"%d" % i * 40])  # one record per segment
    await log.close()
    _append_bytes(_segments(tmp_path, 0)[1], b"junk")  # not a crash artefact: refuse to guess
    with pytest.raises(LogError):
        await LocalLog(tmp_path, 1, segment_bytes=64).start()


async def test_local_partition_count_mismatch_is_an_error(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, 3)
    await log.start()
    await log.close()
    with pytest.raises(LogError):
        await LocalLog(tmp_path, 4).start()


async def test_local_directory_cannot_be_opened_twice(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, 1)
    await log.start()
    try:
        with pytest.raises(LogError):
            await LocalLog(tmp_path, 1).start()
    finally:
        await log.close()


async def test_local_segments_roll_and_trim_deletes_them(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, 1, segment_bytes=1000)
    await log.start()
    try:
        for i in range(100):
            await log.append(0, [b"%03d" % i + b"." * 90])  # ~100-byte frames, ~10 per segment
        assert len(_segments(tmp_path, 0)) >= 9
        # Old records are served from disk (beyond the recent cache) across segment boundaries.
        assert [r.payload[:3] for r in await collect(log, 0, 0, 100)] == [
            b"%03d" % i for i in range(100)
        ]
        await log.trim(0, 55)
        remaining = _segments(tmp_path, 0)
        assert int(remaining[0].stem) <= 55 < int(remaining[1].stem)
        with pytest.raises(LogError):
            await collect(log, 0, 54, 1)
        assert [r.payload[:3] for r in await collect(log, 0, 55, 45)][0] == b"055"
        assert await log.first_lsn(0) == 55
    finally:
        await log.close()
    # After a restart the start is the first kept segment's base: at or below the trim point,
    # and reads from it succeed.
    log = LocalLog(tmp_path, 1, segment_bytes=1000)
    await log.start()
    try:
        first = await log.first_lsn(0)
        assert first == int(_segments(tmp_path, 0)[0].stem) <= 55
        assert (await collect(log, 0, first, 1))[0].payload[:3] == b"%03d" % first
        with pytest.raises(LogError):
            await collect(log, 0, first - 1, 1)
    finally:
        await log.close()
    log = LocalLog(tmp_path, 1, segment_bytes=1000)
    await log.start()
    try:
        assert await log.tail(0) == 100
        assert await log.append(0, [b"100"]) == 100
        assert (await collect(log, 0, 55, 46))[-1].payload == b"100"
    finally:
        await log.close()


async def test_local_reads_beyond_the_recent_cache(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, 1)
    await log.start()
    try:
        await log.append(0, [b"%d" % i for i in range(2000)])
        assert payloads(await collect(log, 0, 0, 2000)) == [b"%d" % i for i in range(2000)]
        assert payloads(await collect(log, 0, 1000, 3)) == [b"1000", b"1001", b"1002"]
        # From the cache (its newest 512): near its oldest end, and near its newest (taken from
        # the right end), up to the last record.
        for start in (1488, 1500, 1743, 1744, 1990, 1999):
            expected = [b"%d" % i for i in range(start, 2000)]
            assert payloads(await collect(log, 0, start, 2000 - start)) == expected
    finally:
        await log.close()


async def test_local_appends_share_fsyncs(tmp_path: Path) -> None:
    """Group commit: 200 concurrent appends to 2 partitions need far fewer than 200 fsyncs.

    Counted through the ``sync_file`` seam (patching ``embedded.sync`` would not reach the
    default argument it was bound to: the count stayed 0 and the test could not fail).
    """
    syncs: list[int] = []

    def counting_sync(fd: int) -> None:
        syncs.append(fd)
        segments.sync(fd)

    log = LocalLog(tmp_path, 2, sync_file=counting_sync)
    await log.start()
    try:
        await asyncio.gather(*(log.append(i % 2, [b"%d" % i]) for i in range(200)))
        # Every append was synced (both files at least once), many appends per fsync (at most
        # one per file per round).
        assert 2 <= len(syncs) < 200 / 4, len(syncs)
    finally:
        await log.close()


async def test_local_round_fsyncs_its_partitions_files_in_parallel(tmp_path: Path) -> None:
    """One round touching 3 partitions has their 3 fsyncs in flight at once (issue 10): a
    barrier of 3 in the sync seam is passed only if none waits for another to return. A failed
    fsync still fails the round's appends (and the log refuses appends from then on)."""
    barrier = threading.Barrier(3, timeout=20)
    calls: list[int] = []

    def sync_together(fd: int) -> None:
        calls.append(fd)
        if len(calls) <= 3:
            barrier.wait()  # BrokenBarrierError after 20 s if the fsyncs ran one by one
        segments.sync(fd)

    log = LocalLog(tmp_path, 3, sync_file=sync_together)
    await log.start()
    try:
        # Queued before the writer runs: one round.
        lsns = await asyncio.gather(*(log.append(p, [b"r%d" % p]) for p in range(3)))
        assert lsns == [0, 0, 0] and len(calls) == 3
        for p in range(3):
            assert payloads(await collect(log, p, 0, 1)) == [b"r%d" % p]
    finally:
        await log.close()

    def failing_sync(fd: int) -> None:
        if "p0001" in os.readlink(f"/proc/self/fd/{fd}"):  # partition 1's segment
            raise OSError(5, "Input/output error")
        segments.sync(fd)

    log = LocalLog(tmp_path, 3, sync_file=failing_sync)
    await log.start()
    try:
        results = await asyncio.gather(
            *(log.append(p, [b"s%d" % p]) for p in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, LogError) for r in results), results
        with pytest.raises(LogError):
            await log.append(0, [b"after"])
    finally:
        await log.close()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_local_rounds_are_synced_by_one_fsync_process_that_close_ends(tmp_path: Path) -> None:
    """Every round of a log is synced by one child process, started with the first round and
    gone after close (issue 10: no thread of the node's process waits for the GIL to sync); no
    thread of this process syncs, and the acknowledged records are in the files."""

    def syncing_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("cairn-")]

    before = len(syncing_threads())
    log = LocalLog(tmp_path, 3)
    syncer = log._syncer
    assert isinstance(syncer, FsyncProcess)
    await log.start()
    assert syncer.pid is None  # started with the first round, not before
    try:
        await asyncio.gather(*(log.append(p, [b"r%d" % p]) for p in range(3)))
        pid = syncer.pid
        assert pid is not None and _process_exists(pid)
        for i in range(5):  # more rounds, the same process
            await asyncio.gather(*(log.append(p, [b"%d" % i]) for p in range(3)))
        assert syncer.pid == pid
        assert len(syncing_threads()) == before
    finally:
        await log.close()
    assert syncer.pid is None and not _process_exists(pid)  # exited and reaped
    reopened = LocalLog(tmp_path, 3)
    await reopened.start()
    try:
        for p in range(3):
            assert payloads(await collect(reopened, p, 0, 6)) == [b"r%d" % p] + [
                b"%d" % i for i in range(5)
            ]
    finally:
        await reopened.close()


async def test_local_round_fails_only_once_every_fsync_of_it_returned(tmp_path: Path) -> None:
    """A round whose one fsync fails while another is still syncing fails its appends only
    after that other fsync returned (no file of the round is in use when the writer goes on),
    and the fsync threads end with the log (issue 10: a crew of plain threads instead of an
    executor's futures)."""
    slow_started = threading.Event()
    release = threading.Event()

    def sync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if "p0001" in name:
            raise OSError(5, "Input/output error")
        if "p0002" in name:
            slow_started.set()
            release.wait(20)
        segments.sync(fd)

    def crew() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("cairn-fsync-")]

    before = len(crew())
    log = LocalLog(tmp_path, 3, sync_file=sync)
    await log.start()
    try:
        appends = asyncio.gather(
            *(log.append(p, [b"r%d" % p]) for p in range(3)), return_exceptions=True
        )
        assert await asyncio.to_thread(slow_started.wait, 20)
        await asyncio.sleep(0.1)  # partition 1's fsync failed by now; partition 2's is held
        assert not appends.done()
        assert len(crew()) == before + 2
        release.set()
        results = await asyncio.wait_for(appends, 20)
        assert all(isinstance(r, LogError) for r in results), results
    finally:
        release.set()
        await log.close()
    assert len(crew()) == before


# --- KafkaLog only ------------------------------------------------------------------------------


async def test_kafka_topic_with_another_partition_count_is_an_error(kafka_bootstrap: str) -> None:
    topic = unique_topic("mismatch")
    log = KafkaLog(kafka_bootstrap, topic, 3)
    await log.start()
    await log.close()
    other = KafkaLog(kafka_bootstrap, topic, 5)
    with pytest.raises(LogError):
        await other.start()
    await other.close()


@pytest.mark.parametrize("segment_bytes", [64 << 20, 64], ids=["one-segment", "rolling"])
async def test_local_append_is_acknowledged_only_after_its_bytes_are_synced(
    tmp_path: Path, segment_bytes: int
) -> None:
    """Every acknowledged record is in a synced file: the sync covers each segment's written
    size, and while the sync has not returned the append is not acknowledged."""
    released = threading.Event()
    synced: dict[str, int] = {}  # segment file name → its size when synced

    def sync_when_released(fd: int) -> None:
        released.wait(timeout=30)
        segments.sync(fd)
        synced[Path(os.readlink(f"/proc/self/fd/{fd}")).name] = os.fstat(fd).st_size

    log = LocalLog(tmp_path, 1, segment_bytes=segment_bytes, sync_file=sync_when_released)
    await log.start()
    try:
        appending = asyncio.create_task(log.append(0, [b"%d" % i * 40 for i in range(3)]))
        await asyncio.sleep(0.2)
        assert not appending.done()  # held: its sync has not returned
        released.set()
        assert await asyncio.wait_for(appending, timeout=30) == 2
        await log.append(0, [b"more"])
        files = _segments(tmp_path, 0)
        assert {f.name: f.stat().st_size for f in files} == {
            f.name: synced.get(f.name, -1) for f in files
        }
    finally:
        released.set()
        await log.close()


async def test_kafka_trim_on_a_broker_without_delete_records_is_logged_once(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Tansu has no DeleteRecords: trimming says so once, then costs nothing, and every record
    stays readable (first_lsn stays 0)."""
    log = KafkaLog(
        kafka_bootstrap, unique_topic("trim"), 2, fetch_max_wait=timedelta(milliseconds=10)
    )
    await log.start()
    try:
        await log.append(0, [b"%d" % i for i in range(5)])
        with caplog.at_level(logging.WARNING, logger="runtime.log.kafka"):
            for upto in (2, 3, 4):
                async with asyncio.timeout(20):
                    await log.trim(0, upto)
        warnings = [r for r in caplog.records if "trim" in r.getMessage().lower()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert await log.first_lsn(0) == 0
        assert payloads(await collect(log, 0, 0, 5)) == [b"%d" % i for i in range(5)]
    finally:
        await log.close()
