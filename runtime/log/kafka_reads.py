"""KafkaLog's reading side: records of a partition in order, the tail and the start offset.

Reads share one consumer ("lane") per KafkaLog: every partition is assigned to it up front and
paused; a reader seeks its partition, resumes it and pulls only that partition with
``getmany(tp)``, so aiokafka's per-partition prefetch buffer is the bounded queue and a slow
reader only stops fetching for its own partition. A second concurrent reader of the same
partition needs its own position, so it gets another lane (another consumer).

The tail is never taken from ``end_offsets()``/``seek_to_end()`` (wrong on the test broker when
the last batch holds several records): it is the highwater mark of a real fetch response, and at
least one past the newest offset this KafkaLog has been acked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError, OffsetOutOfRangeError

from runtime.log.base import LogError, LogRecord
from runtime.log.kafka_clients import _quietly

_BATCH_RECORDS_MAX = 256
_BATCH_BYTES_MAX = 1 << 20
# How long a reader's getmany waits before re-checking for close. close() wakes it at once (it
# stops the consumer), so this only bounds how often an idle reader loops.
_READER_IDLE_MS = 5_000
# The tail probe wants a fetch response, not data: a short broker-side wait keeps tail() of an
# empty partition quick; it polls getmany at the same pace until the highwater is known.
_PROBE_FETCH_WAIT_MS = 10
_PROBE_POLL_MS = 10


@dataclass(eq=False)
class _Lane:
    """One consumer with every partition assigned; each partition serves at most one reader."""

    consumer: Any  # AIOKafkaConsumer (untyped library)
    busy: set[int] = field(default_factory=set)


class KafkaReads:
    """The reading methods of ``KafkaLog`` (a mixin: ``KafkaLog.__init__`` sets these)."""

    _topic: str
    _bootstrap: str
    _client_id: str
    _partition_count: int
    _fetch_max_wait_ms: int
    _request_timeout_ms: int
    _max_bytes: int | None
    _lanes: list[_Lane]
    _lanes_lock: asyncio.Lock
    _probe: Any
    _probe_lock: asyncio.Lock
    _acked_tail: list[int]
    _closing: bool

    if TYPE_CHECKING:

        def _check_partition(self, partition: int) -> None: ...

        def _check_usable(self) -> None: ...

    async def read(self, partition: int, from_lsn: int) -> AsyncIterator[list[LogRecord]]:
        """Yield records from ``from_lsn`` on, in order without gaps, until close.

        ``from_lsn`` may be at most ``tail(partition)``. Reading below a trim point raises
        ``LogError`` on brokers that trimmed.
        """
        self._check_partition(partition)
        if from_lsn < 0:
            raise ValueError(f"from_lsn must be >= 0, got {from_lsn}")
        self._check_usable()
        if from_lsn > self._acked_tail[partition]:
            tail = await self.tail(partition)
            if from_lsn > tail:
                raise LogError(f"read from {from_lsn} beyond the tail {tail} of {partition}")
        lane = await self._lease(partition)
        tp = TopicPartition(self._topic, partition)
        try:
            if self._closing:  # closed while this reader waited for its lane
                return
            lane.consumer.seek(tp, from_lsn)
            lane.consumer.resume(tp)
            lsn = from_lsn
            while not self._closing:
                batch = _to_batch(await self._fetch(lane, tp), lsn, tp)
                for chunk in _chunks(batch):
                    lsn = chunk[-1].lsn + 1
                    yield chunk
        finally:
            self._release(lane, partition)

    async def tail(self, partition: int) -> int:
        """The offset the next record will get, from a fresh fetch response's highwater."""
        self._check_partition(partition)
        self._check_usable()
        tp = TopicPartition(self._topic, partition)
        async with self._probe_lock:
            probe = await self._probe_consumer()
            probe.assign([tp])  # a new assignment: the highwater is unknown until a fetch
            # Fetch at a record known to exist, so that the broker answers at once.
            probe.seek(tp, max(self._acked_tail[partition] - 1, 0))
            try:
                highwater = await self._await_highwater(probe, tp)
            finally:
                if not self._closing:
                    probe.pause(tp)  # else it keeps fetching this partition in the background
        return max(highwater, self._acked_tail[partition])

    async def first_lsn(self, partition: int) -> int:
        """The partition's log start offset (ListOffsets earliest): above 0 once trimmed."""
        self._check_partition(partition)
        self._check_usable()
        tp = TopicPartition(self._topic, partition)
        async with self._probe_lock:
            probe = await self._probe_consumer()
            try:
                offsets = await probe.beginning_offsets([tp])
            except KafkaError as exc:
                raise LogError(f"cannot read the start offset of {tp}: {exc!r}") from exc
        return int(offsets[tp])

    def _new_consumer(self, **overrides: Any) -> Any:
        options: dict[str, Any] = {
            "bootstrap_servers": self._bootstrap,
            "client_id": self._client_id,
            "group_id": None,
            "enable_auto_commit": False,
            # Never reset silently: a position below the trim point must surface as an error.
            "auto_offset_reset": "none",
            "fetch_max_wait_ms": self._fetch_max_wait_ms,
            "request_timeout_ms": self._request_timeout_ms,
        }
        if self._max_bytes is not None:
            options["max_partition_fetch_bytes"] = max(self._max_bytes, 1024 * 1024)
            options["fetch_max_bytes"] = max(self._max_bytes, 50 * 1024 * 1024)
        options.update(overrides)
        return AIOKafkaConsumer(**options)

    async def _lease(self, partition: int) -> _Lane:
        """A lane whose consumer has ``partition`` free, starting a new lane if none has."""
        async with self._lanes_lock:
            for lane in self._lanes:
                if partition not in lane.busy:
                    lane.busy.add(partition)
                    return lane
            lane = _Lane(await self._start_lane_consumer(), {partition})
            self._lanes.append(lane)
            return lane

    async def _start_lane_consumer(self) -> Any:
        """A started consumer with every partition assigned, at offset 0 and paused."""
        consumer = await self._start_consumer(self._new_consumer())
        tps = [TopicPartition(self._topic, p) for p in range(self._partition_count)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)  # a valid position, so no offset reset is ever attempted
        consumer.pause(*tps)
        return consumer

    async def _start_consumer(self, consumer: Any) -> Any:
        """``consumer``, started; stopped again (LogError) if it cannot start or the log closed
        meanwhile."""
        try:
            await consumer.start()
        except KafkaError as exc:
            await _quietly(consumer.stop())
            raise LogError(f"cannot start a consumer for {self._topic}: {exc!r}") from exc
        if self._closing:
            await _quietly(consumer.stop())
            raise LogError("the log is closed")
        return consumer

    def _release(self, lane: _Lane, partition: int) -> None:
        lane.busy.discard(partition)
        if not self._closing:
            lane.consumer.pause(TopicPartition(self._topic, partition))

    async def _fetch(self, lane: _Lane, tp: TopicPartition) -> list[Any]:
        """The next records of ``tp`` (empty after an idle wait or when closing)."""
        try:
            data = await lane.consumer.getmany(
                tp, timeout_ms=_READER_IDLE_MS, max_records=_BATCH_RECORDS_MAX
            )
        except ConsumerStoppedError:
            if self._closing:
                return []
            raise LogError(f"the consumer of {tp.topic} stopped") from None
        except OffsetOutOfRangeError as exc:
            raise LogError(f"{tp.topic}:{tp.partition}: position out of range (trimmed?)") from exc
        except KafkaError as exc:
            raise LogError(f"read of {tp.topic}:{tp.partition} failed: {exc!r}") from exc
        records: list[Any] = data.get(tp, [])
        return records

    async def _await_highwater(self, probe: Any, tp: TopicPartition) -> int:
        """Poll the probe until a fetch response for ``tp`` has set its highwater."""
        deadline = asyncio.get_running_loop().time() + self._request_timeout_ms / 1000
        while (highwater := probe.highwater(tp)) is None:
            self._check_usable()
            if asyncio.get_running_loop().time() > deadline:
                raise LogError(f"no fetch response for {tp.topic}:{tp.partition}")
            try:
                await probe.getmany(tp, timeout_ms=_PROBE_POLL_MS, max_records=1)
            except (KafkaError, ConsumerStoppedError) as exc:
                self._check_usable()
                raise LogError(f"tail of {tp.topic}:{tp.partition}: {exc!r}") from exc
        return int(highwater)

    async def _probe_consumer(self) -> Any:
        if self._probe is None:
            # "earliest": if the probe position was trimmed away, reset and fetch anyway; only
            # the highwater matters.
            self._probe = await self._start_consumer(
                self._new_consumer(
                    auto_offset_reset="earliest", fetch_max_wait_ms=_PROBE_FETCH_WAIT_MS
                )
            )
        return self._probe


def _to_batch(records: list[Any], next_lsn: int, tp: TopicPartition) -> list[LogRecord]:
    """Records from ``next_lsn`` on; a gap means offsets were lost, which must not be hidden."""
    batch: list[LogRecord] = []
    for record in records:
        if record.offset < next_lsn:
            continue  # the broker may answer from the start of the batch holding next_lsn
        if record.offset != next_lsn:
            raise LogError(
                f"{tp.topic}:{tp.partition}: expected offset {next_lsn}, got {record.offset}"
            )
        batch.append(LogRecord(lsn=record.offset, payload=record.value or b""))
        next_lsn += 1
    return batch


def _chunks(batch: list[LogRecord]) -> list[list[LogRecord]]:
    """Split a fetched batch so that no yielded batch exceeds ~1 MiB (unless one record does)."""
    chunks: list[list[LogRecord]] = []
    size = 0
    for record in batch:
        if not chunks or size + len(record.payload) > _BATCH_BYTES_MAX:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += len(record.payload)
    return chunks
