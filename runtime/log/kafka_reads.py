"""KafkaLog's reading side: records of a partition in order, the tail and the start offset.

Reads share one consumer ("lane") per KafkaLog: every partition is assigned to it up front and
paused; a reader seeks its partition and resumes it. One task per lane (its pump) takes every
fetched record out of the consumer with ``getmany()`` and hands each partition's records to its
reader's inbox, waking only the readers that got records. Readers do not call ``getmany(tp)``
themselves: aiokafka wakes every waiting ``getmany`` on any fetch response, so N readers woke N
times per response (issue 7: a node's loop iterations), and records a reader had not taken yet
(a paced standby's, ``runtime.worker.partition``) kept aiokafka from sending the lane's next fetch
for up to its prefetch backoff (100 ms), the leaders' records included. An inbox holds at most
``_INBOX_RECORDS_MAX`` records or ``_INBOX_BYTES_MAX`` bytes (one record always fits): past
either its partition is paused in the consumer (aiokafka drops what it prefetched for it and
refetches from the position after ``resume``), so a slow reader only stops fetching for its own
partition. A second concurrent reader of the same partition needs its own position, so it gets
another lane (another consumer).

The tail is never taken from ``end_offsets()``/``seek_to_end()`` (wrong on the test broker when
the last batch holds several records): it is the highwater mark of a real fetch response, and at
least one past the newest offset this KafkaLog has been acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError, OffsetOutOfRangeError

from runtime.log.base import LogError, LogRecord, ReadHint
from runtime.log.kafka_clients import _quietly

_log = logging.getLogger(__name__)

_BATCH_RECORDS_MAX = 256
_BATCH_BYTES_MAX = 1 << 20
# What a reader's inbox holds before its partition is paused (about what aiokafka prefetched per
# partition before: one fetch response, max_partition_fetch_bytes 1 MiB).
_INBOX_RECORDS_MAX = 2 * _BATCH_RECORDS_MAX
_INBOX_BYTES_MAX = 2 * _BATCH_BYTES_MAX
# How long a pump's getmany waits before re-checking for close. close() wakes it at once (it
# stops the consumer), so this only bounds how often an idle pump loops.
_PUMP_IDLE_MS = 5_000
# After a failed fetch (reported to the lane's readers) the pump waits this long before the next,
# so that a broker failing every fetch is not asked in a busy loop.
_PUMP_RETRY_S = 0.1
# The tail probe wants a fetch response, not data: a short broker-side wait keeps tail() of an
# empty partition quick; it polls getmany at the same pace until the highwater is known.
_PROBE_FETCH_WAIT_MS = 10
_PROBE_POLL_MS = 10


@dataclass(eq=False)
class _Inbox:
    """A leased partition's fetched records, waiting for its reader (filled by the lane's pump)."""

    records: deque[Any] = field(default_factory=deque)  # aiokafka ConsumerRecords
    bytes: int = 0
    error: LogError | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def full(self) -> bool:
        return len(self.records) >= _INBOX_RECORDS_MAX or self.bytes >= _INBOX_BYTES_MAX


@dataclass(eq=False)
class _Lane:
    """One consumer with every partition assigned; each partition serves at most one reader.

    ``inboxes`` has an entry per leased (busy) partition; ``held`` are the leased partitions
    paused because their inbox is full, ``idle`` those paused because their reader said so
    (``ReadHint``); ``pump`` moves fetched records into the inboxes."""

    consumer: Any  # AIOKafkaConsumer (untyped library)
    busy: set[int] = field(default_factory=set)
    inboxes: dict[int, _Inbox] = field(default_factory=dict)
    held: set[int] = field(default_factory=set)
    idle: set[int] = field(default_factory=set)
    pump: asyncio.Task[None] | None = None


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

    async def read(
        self, partition: int, from_lsn: int, hint: ReadHint | None = None
    ) -> AsyncIterator[list[LogRecord]]:
        """Yield records from ``from_lsn`` on, in order without gaps, until close.

        ``from_lsn`` may be at most ``tail(partition)``. Reading below a trim point raises
        ``LogError`` on brokers that trimmed. While ``hint`` says idle the partition is paused
        in the lane's consumer: it is left out of the fetches (a paced standby's records are
        fetched once per wait, with the leaders' fetch that follows, not with every fetch).
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
            # Synchronously with the inbox's creation (``_lease``): nothing the pump drained
            # before this seek can reach the inbox (the pump routes in the step that drains).
            lane.consumer.seek(tp, from_lsn)
            if hint is not None:
                hint.listen(lambda idle: self._idle(lane, tp, idle))
            self._idle(lane, tp, hint is not None and hint.idle)
            lsn = from_lsn
            while not self._closing:
                batch = _to_batch(await self._take(lane, tp), lsn, tp)
                for chunk in _chunks(batch):
                    lsn = chunk[-1].lsn + 1
                    yield chunk
        finally:
            if hint is not None:
                hint.listen(None)
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
                    lane.inboxes[partition] = _Inbox()
                    return lane
            lane = _Lane(await self._start_lane_consumer(), {partition})
            lane.inboxes[partition] = _Inbox()
            # Owned by this log: close() cancels and awaits it (after its consumer stopped).
            lane.pump = asyncio.get_running_loop().create_task(
                self._pump(lane), name=f"kafka-lane/{self._topic}/{len(self._lanes)}"
            )
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
        lane.inboxes.pop(partition, None)
        lane.held.discard(partition)
        lane.idle.discard(partition)
        if not self._closing:
            lane.consumer.pause(TopicPartition(self._topic, partition))

    async def _stop_pumps(self) -> None:
        """(close, once the consumers stopped) End every lane's pump and wake its readers."""
        for lane in self._lanes:
            if lane.pump is not None:
                lane.pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.pump
            for inbox in lane.inboxes.values():
                inbox.ready.set()

    async def _take(self, lane: _Lane, tp: TopicPartition) -> list[Any]:
        """The next records of ``tp`` from its inbox, at most ``_BATCH_RECORDS_MAX`` (empty
        when closing); waits for the pump while there are none."""
        inbox = lane.inboxes[tp.partition]
        while not inbox.records and inbox.error is None and not self._closing:
            await inbox.ready.wait()
            inbox.ready.clear()
        if inbox.error is not None:
            error, inbox.error = inbox.error, None
            raise error
        count = min(len(inbox.records), _BATCH_RECORDS_MAX)
        records = [inbox.records.popleft() for _ in range(count)]
        inbox.bytes -= sum(len(r.value or b"") for r in records)
        if tp.partition in lane.held and not inbox.full():
            lane.held.discard(tp.partition)
            self._idle(lane, tp, tp.partition in lane.idle)
        return records

    def _idle(self, lane: _Lane, tp: TopicPartition, idle: bool) -> None:
        """Pause ``tp`` while its reader is idle (its ``ReadHint``) or its inbox full (``held``),
        resume it otherwise. A paused partition's prefetched records are dropped by aiokafka and
        fetched again from the position after ``resume``: nothing is skipped."""
        if tp.partition not in lane.busy or self._closing:
            return
        if idle:
            lane.idle.add(tp.partition)
        else:
            lane.idle.discard(tp.partition)
        if idle or tp.partition in lane.held:
            lane.consumer.pause(tp)
        else:
            lane.consumer.resume(tp)

    async def _pump(self, lane: _Lane) -> None:
        """Move the lane's fetched records into their readers' inboxes until close; a failed
        fetch is each affected reader's ``LogError`` (its supervisor restarts it), never the
        pump's end."""
        while not self._closing:
            try:
                data = await lane.consumer.getmany(timeout_ms=_PUMP_IDLE_MS)
            except ConsumerStoppedError:
                if self._closing:
                    break
                self._fail(lane, None, LogError(f"the consumer of {self._topic} stopped"))
            except OffsetOutOfRangeError as exc:
                named = _partitions_of(exc)
                for tp in named:
                    error = LogError(f"{tp.topic}:{tp.partition}: position out of range (trimmed?)")
                    self._fail(lane, tp.partition, error)
                if not named:  # (no partition named: every reader hears it, none waits on)
                    error = LogError(f"{self._topic}: a position is out of range (trimmed?)")
                    self._fail(lane, None, error)
            except KafkaError as exc:
                self._fail(lane, None, LogError(f"read of {self._topic} failed: {exc!r}"))
            except Exception as exc:  # a bug here must not stop every reader of the lane
                _log.exception("the reader of %s failed", self._topic)
                self._fail(lane, None, LogError(f"read of {self._topic} failed: {exc!r}"))
            else:
                self._route(lane, data)
                continue
            await asyncio.sleep(_PUMP_RETRY_S)
        for inbox in lane.inboxes.values():
            inbox.ready.set()  # closing: every reader ends

    def _route(self, lane: _Lane, data: dict[Any, list[Any]]) -> None:
        """Hand each partition's fetched records to its reader; pause a partition whose inbox
        is full (aiokafka drops its prefetch and refetches from the position on resume)."""
        for tp, records in data.items():
            inbox = lane.inboxes.get(tp.partition)
            if inbox is None or not records:
                continue  # released meanwhile (paused since): nobody reads it from here
            inbox.records.extend(records)
            inbox.bytes += sum(len(r.value or b"") for r in records)
            inbox.ready.set()
            if inbox.full() and tp.partition not in lane.held:
                lane.held.add(tp.partition)
                lane.consumer.pause(tp)

    def _fail(self, lane: _Lane, partition: int | None, error: LogError) -> None:
        """Report ``error`` to the reader of ``partition`` (None: to every reader of the lane)."""
        if partition is None:
            targets = list(lane.inboxes.values())
        else:
            inbox = lane.inboxes.get(partition)
            targets = [] if inbox is None else [inbox]
        for inbox in targets:
            inbox.error = error
            inbox.ready.set()

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


def _partitions_of(exc: OffsetOutOfRangeError) -> list[TopicPartition]:
    """The partitions an OffsetOutOfRangeError names (aiokafka raises it with {tp: offset})."""
    named = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return [tp for tp in named if isinstance(tp, TopicPartition)]


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
