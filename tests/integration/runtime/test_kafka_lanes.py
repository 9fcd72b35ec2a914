"""KafkaLog's reading lanes (``runtime.log.kafka_reads``): one pump per consumer hands each
partition's records to its reader; a reader that stops taking them holds only its own partition
(its inbox is bounded: past the bound the partition is paused, and resumed, from where the
reader is, once it takes again); a reader whose ``ReadHint`` says idle is left out of the
fetches until it is not. On the real Tansu broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from runtime.log import KafkaLog, LogRecord, ReadHint
from runtime.log.kafka_reads import _INBOX_RECORDS_MAX
from tests.support.broker import unique_topic

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def log(kafka_bootstrap: str) -> AsyncIterator[KafkaLog]:
    # Tansu answers a fetch only when fetch_max_wait expires (DESIGN §10): keep it short.
    log = KafkaLog(
        kafka_bootstrap, unique_topic("lanes"), 2, fetch_max_wait=timedelta(milliseconds=10)
    )
    await log.start()
    try:
        yield log
    finally:
        await log.close()


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s: {what}")


async def test_a_reader_that_stops_taking_holds_only_its_partition_and_resumes_exactly(
    log: KafkaLog,
) -> None:
    # 4 MiB: twice an inbox's bound in bytes, more than one fetch response (1 MiB a partition).
    count, total = 2048, 2048 + 64
    assert count > _INBOX_RECORDS_MAX

    def payload(i: int) -> bytes:
        return b"%06d" % i + b"." * 2042

    for start in range(0, count, 128):
        await log.append(0, [payload(i) for i in range(start, start + 128)])
    slow = log.read(0, 0)
    got: list[LogRecord] = list(await anext(slow))  # type: ignore[call-overload]
    lane = log._lanes[0]
    # The pump keeps fetching for partition 0 until its inbox is full, then pauses it there.
    await _until(lambda: 0 in lane.held, "partition 0 held")
    # Held because full (by records or by bytes; one fetch response may bring all of it).
    assert lane.inboxes[0].full()
    # Appended while paused: fetched only once the reader took enough to resume the partition.
    await log.append(0, [payload(i) for i in range(count, total)])

    # Meanwhile the other partition of the same lane is read as usual.
    other = log.read(1, 0)
    try:
        await log.append(1, [b"a", b"b"])
        async with asyncio.timeout(30):
            batch: list[LogRecord] = list(await anext(other))  # type: ignore[call-overload]
            while len(batch) < 2:
                batch += await anext(other)  # type: ignore[call-overload]
        assert [r.payload for r in batch] == [b"a", b"b"]
        assert log._lanes == [lane]  # the same consumer, not a second lane
    finally:
        await other.aclose()  # type: ignore[attr-defined]

    # The slow reader takes again: every record once, in order, across the pause and resume.
    try:
        async with asyncio.timeout(30):
            while len(got) < total:
                got += await anext(slow)  # type: ignore[call-overload]
    finally:
        await slow.aclose()  # type: ignore[attr-defined]
    assert [r.lsn for r in got] == list(range(total))
    assert [r.payload for r in got] == [payload(i) for i in range(total)]
    assert 0 not in lane.held and 0 not in lane.inboxes  # released


async def test_close_ends_readers_waiting_on_the_pump(log: KafkaLog) -> None:
    await log.append(0, [b"x"])
    readers = [log.read(p, 0) for p in (0, 1)]
    assert [r.payload for r in await anext(readers[0])] == [b"x"]  # type: ignore[call-overload]
    waiting = [asyncio.ensure_future(anext(r)) for r in readers]  # type: ignore[call-overload]
    await asyncio.sleep(0.2)
    assert not any(w.done() for w in waiting)
    await log.close()
    done, _ = await asyncio.wait(waiting, timeout=10)
    assert len(done) == 2
    assert all(isinstance(w.exception(), StopAsyncIteration) for w in waiting)
    assert all(lane.pump is not None and lane.pump.done() for lane in log._lanes)


async def test_an_idle_reader_is_left_out_of_fetches_and_misses_nothing(log: KafkaLog) -> None:
    await log.append(0, [b"a0"])
    hint = ReadHint()
    paced = log.read(0, 0, hint)
    other = log.read(1, 0)
    try:
        assert [r.payload for r in await anext(paced)] == [b"a0"]  # type: ignore[call-overload]
        hint.set_idle(True)  # as a paced standby does between its batches
        await log.append(0, [b"a1", b"a2"])
        await log.append(1, [b"b0"])
        # A fetch answered after both appends brought partition 1's record; partition 0's
        # records stayed in the log (dropped if a fetch in flight carried them: not taken).
        async with asyncio.timeout(30):
            assert [r.payload for r in await anext(other)] == [b"b0"]  # type: ignore[call-overload]
        assert 0 in log._lanes[0].idle
        assert not log._lanes[0].inboxes[0].records
        hint.set_idle(False)
        got: list[LogRecord] = []
        async with asyncio.timeout(30):
            while len(got) < 2:
                got += await anext(paced)  # type: ignore[call-overload]
        assert [(r.lsn, r.payload) for r in got] == [(1, b"a1"), (2, b"a2")]
    finally:
        await paced.aclose()  # type: ignore[attr-defined]
        await other.aclose()  # type: ignore[attr-defined]
    hint.set_idle(True)  # after the read ended: nobody listens, nothing is paused
    assert not log._lanes[0].idle
