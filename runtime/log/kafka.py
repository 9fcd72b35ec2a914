"""KafkaLog: the log on a Kafka topic with N partitions (DESIGN §3, §10).

The Kafka offset is the LSN. Appends always name their partition and wait for ``acks=all``.
The idempotent producer is on where the broker supports it (detected at start: Apache Kafka has
it, the Tansu test broker lacks InitProducerId); without it a retried send can append a record
twice, so records above this seam are deduplicated anyway (DESIGN §5). Topic creation and the
check of an existing topic's settings live in ``runtime.log.kafka_topics``.

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
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import (
    ConsumerStoppedError,
    KafkaConnectionError,
    KafkaError,
    OffsetOutOfRangeError,
    UnsupportedVersionError,
)

from runtime.log.base import Log, LogError, LogRecord
from runtime.log.kafka_topics import TopicSpec, ensure_topic
from runtime.log.reachability import Reachability
from runtime.metrics import AppendMeter

__all__ = ["BrokerSupport", "KafkaLog"]

_log = logging.getLogger(__name__)

_BATCH_RECORDS_MAX = 256
_BATCH_BYTES_MAX = 1 << 20
# How long a reader's getmany waits before re-checking for close. close() wakes it at once (it
# stops the consumer), so this only bounds how often an idle reader loops.
_READER_IDLE_MS = 5_000
# The tail probe wants a fetch response, not data: a short broker-side wait keeps tail() of an
# empty partition quick; it polls getmany at the same pace until the highwater is known.
_PROBE_FETCH_WAIT_MS = 10
_PROBE_POLL_MS = 10
# After a failed trim, trims are skipped this long (a broker that fails DeleteRecords every time
# is not asked again on every snapshot).
_TRIM_RETRY_S = 600


@dataclass
class BrokerSupport:
    """What the brokers support, learned by the first KafkaLog of a node that starts and shared
    with its other KafkaLogs (so the detection, and its log line, happens once).

    Attributes:
        idempotence: Whether an idempotent producer could start (None: not tried yet).
    """

    idempotence: bool | None = None


@dataclass(eq=False)
class _Lane:
    """One consumer with every partition assigned; each partition serves at most one reader."""

    consumer: Any  # AIOKafkaConsumer (untyped library)
    busy: set[int] = field(default_factory=set)


class KafkaLog(Log):
    """A log on the Kafka topic ``topic``.

    Args:
        bootstrap: ``host:port[,host:port...]`` of the brokers.
        topic: The topic; created with ``partitions`` partitions if missing.
        partitions: The partition count; an existing topic with another count raises ``LogError``.
        client_id: Client id reported to the brokers.
        replication_factor: Wanted replicas of a created topic (lowered to the broker count on
            a smaller cluster); an existing topic with fewer is reported, not changed.
        compacted: The topic is Cairn's metadata (keyed records, ``cleanup.policy=compact``);
            otherwise a log without retention (README "Kafka").
        support: Shared with the node's other KafkaLogs (see ``BrokerSupport``).
        linger: How long the producer waits to batch records of concurrent appends.
        fetch_max_wait: Longest broker-side wait of a reader's fetch. Kafka answers as soon as
            data arrives; the test broker (Tansu) always waits this long, so it bounds read
            latency there.
        request_timeout: Timeout of each broker request.
        max_record_bytes: The largest record appended (the node's size policy). The producer's
            ``max_request_size``, the readers' fetch sizes and a created topic's
            ``max.message.bytes`` are set to allow it; None keeps the clients' defaults (1 MiB).

    ``trim`` is best effort: it asks for DeleteRecords and only logs a failure (the test broker
    does not implement it), so records may stay readable below the trim point.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        *,
        client_id: str = "cairn",
        replication_factor: int = 3,
        compacted: bool = False,
        support: BrokerSupport | None = None,
        linger: timedelta = timedelta(milliseconds=2),
        fetch_max_wait: timedelta = timedelta(milliseconds=100),
        request_timeout: timedelta = timedelta(seconds=30),
        max_record_bytes: int | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self._bootstrap = bootstrap
        self._topic = topic
        self._meter = AppendMeter(topic)
        self._partition_count = partitions
        self._client_id = client_id
        self._replication_factor = replication_factor
        self._compacted = compacted
        self._support = support if support is not None else BrokerSupport()
        self._linger_ms = int(linger.total_seconds() * 1000)
        self._fetch_max_wait_ms = max(1, int(fetch_max_wait.total_seconds() * 1000))
        self._request_timeout_ms = int(request_timeout.total_seconds() * 1000)
        # Record plus batch framing; None = the clients' defaults.
        self._max_bytes = None if max_record_bytes is None else max_record_bytes + 64 * 1024
        self._admin: Any = None
        self._producer: Any = None
        self._lanes: list[_Lane] = []
        # Serialises lane creation, so that readers starting together share the first lane.
        self._lanes_lock = asyncio.Lock()
        self._probe: Any = None
        self._probe_lock = asyncio.Lock()
        # Held while one append enqueues its records, so that they stay contiguous.
        self._send_locks = [asyncio.Lock() for _ in range(partitions)]
        # One past the newest offset acked to this KafkaLog, per partition: a lower bound of the
        # tail that needs no broker round trip.
        self._acked_tail = [0] * partitions
        self._trim_unsupported = False
        # When the last trim failed (monotonic seconds); trims are skipped for a while after.
        self._trim_failed_at: float | None = None
        self._started = False
        self._closing = False
        self._closed = asyncio.Event()
        # Probed by the node (a supervised task running ``reachability.run``): while the broker
        # does not answer, appends fail at once and health says why.
        self.reachability = Reachability(self._ping, f"Kafka ({topic} at {bootstrap})")

    @property
    def partitions(self) -> int:
        """The number of partitions."""
        return self._partition_count

    @property
    def topic(self) -> str:
        return self._topic

    async def start(self) -> None:
        """Create the topic if needed (checking its partition count) and start the producer.

        Consumers start lazily, on the first ``read`` or ``tail``.
        """
        if self._started or self._closing:
            raise LogError("KafkaLog.start() called twice or after close()")
        self._started = True
        try:
            self._admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                request_timeout_ms=self._request_timeout_ms,
            )
            await self._admin.start()
            spec = TopicSpec(
                self._topic,
                self._partition_count,
                compacted=self._compacted,
                replication_factor=self._replication_factor,
                max_message_bytes=self._max_bytes,
            )
            await ensure_topic(self._admin, spec, timeout_ms=self._request_timeout_ms)
            self._producer = await self._start_producer()
        except KafkaError as exc:
            await self.close()
            raise LogError(f"cannot start the log on topic {self._topic}: {exc!r}") from exc
        except BaseException:
            await self.close()
            raise

    @property
    def idempotent(self) -> bool:
        """Whether appends go through an idempotent producer (known once started)."""
        return bool(self._support.idempotence)

    async def close(self) -> None:
        """Flush pending appends, stop every client and end readers. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            clients = [lane.consumer for lane in self._lanes]
            clients += [self._probe, self._producer]
            for client in clients:
                if client is not None:
                    await _quietly(client.stop())
            if self._admin is not None:
                await _quietly(self._admin.close())
        finally:
            self._closed.set()

    async def append(
        self, partition: int, records: Sequence[bytes], keys: Sequence[bytes] | None = None
    ) -> int:
        """Produce ``records`` contiguously and return the offset of the last one once acked.

        ``keys`` become the records' Kafka keys (a compacted topic keeps the last of each). On
        ``LogError`` some of the records may have been appended; callers retry and rely on
        dedup. If the caller is cancelled the records may still be appended.
        """
        self._check_partition(partition)
        if not records:
            raise ValueError("append needs at least one record")
        if keys is not None and len(keys) != len(records):
            raise ValueError(f"{len(keys)} keys for {len(records)} records")
        self._check_usable()
        self.reachability.check()
        started = asyncio.get_running_loop().time()
        futures: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        async with self._send_locks[partition]:
            for index, record in enumerate(records):
                key = None if keys is None else bytes(keys[index])
                try:
                    futures.append(
                        await self._producer.send(
                            self._topic, bytes(record), key=key, partition=partition
                        )
                    )
                except KafkaError as exc:
                    error = exc
                    break
        if futures:
            # asyncio.wait never cancels the delivery futures; aiokafka owns them.
            await asyncio.wait(futures)
        for future in futures:
            if error is None:
                error = asyncio.CancelledError() if future.cancelled() else future.exception()
        if error is not None:
            raise LogError(f"append to {self._topic}:{partition} failed: {error!r}") from error
        last: int = futures[-1].result().offset
        self._acked_tail[partition] = max(self._acked_tail[partition], last + 1)
        self._meter.observe(asyncio.get_running_loop().time() - started, len(records))
        return last

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

    async def trim(self, partition: int, upto_lsn: int) -> None:
        """Ask the broker to delete records below ``upto_lsn``; failures are logged, not raised."""
        self._check_partition(partition)
        self._check_usable()
        if upto_lsn <= 0 or self._trim_unsupported:
            return
        failed_at = self._trim_failed_at
        if failed_at is not None and time.monotonic() - failed_at < _TRIM_RETRY_S:
            return
        tp = TopicPartition(self._topic, partition)
        try:
            await self._admin.delete_records(
                {tp: RecordsToDelete(before_offset=upto_lsn)},
                timeout_ms=self._request_timeout_ms,
            )
        except UnsupportedVersionError:
            self._trim_unsupported = True
            _log.warning("broker has no DeleteRecords: trimming %s disabled", self._topic)
        except KafkaError as exc:
            # A broker that advertises DeleteRecords but fails it (the Tansu test broker drops
            # the connection) would fail every trim: say so once, then retry only now and then.
            now = time.monotonic()
            if self._trim_failed_at is None:
                _log.warning(
                    "trim of %s:%d below %d failed: %r; records are kept, retrying every %d s "
                    "(quietly)",
                    self._topic,
                    partition,
                    upto_lsn,
                    exc,
                    _TRIM_RETRY_S,
                )
            else:
                _log.debug("trim of %s:%d failed again: %r", self._topic, partition, exc)
            self._trim_failed_at = now
        else:
            if self._trim_failed_at is not None:
                _log.info("trimming %s works again", self._topic)
                self._trim_failed_at = None

    # --- internals ----------------------------------------------------------------------------

    async def _ping(self) -> None:
        """One round trip to a broker (Metadata of this topic): the reachability probe."""
        self._check_usable()
        await self._admin.describe_topics([self._topic])

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self._partition_count:
            raise ValueError(f"partition {partition} not in [0, {self._partition_count})")

    def _check_usable(self) -> None:
        if self._closing:
            raise LogError("the log is closed")
        if not self._started:
            raise LogError("the log is not started")

    async def _start_producer(self) -> Any:
        """A started producer with ``acks=all``: idempotent if the brokers support it.

        The first KafkaLog of a node tries an idempotent producer (InitProducerId at start); a
        broker that refuses it (the Tansu test broker) gets a plain producer and one log line.
        Records are deduplicated above this seam either way (DESIGN §5).
        """
        if self._support.idempotence is not False:
            producer = self._new_producer(idempotent=True)
            sender_log = logging.getLogger("aiokafka.producer.sender")
            sender_log.addFilter(_quiet_probe)
            try:
                await asyncio.wait_for(producer.start(), self._request_timeout_ms / 1000)
            except KafkaConnectionError:
                await _quietly(producer.stop())
                raise  # the broker is unreachable: that is not an answer about idempotence
            except TimeoutError:
                await _quietly(producer.stop())
                raise LogError(f"no answer to InitProducerId for {self._topic}") from None
            except KafkaError as exc:
                await _quietly(producer.stop())
                _log.warning(
                    "the Kafka brokers refused an idempotent producer (%s): idempotence off, "
                    "records sent twice on retries are deduplicated by Cairn",
                    type(exc).__name__,
                )
                self._support.idempotence = False
            else:
                if self._support.idempotence is None:
                    _log.info("Kafka producer idempotence on (the brokers support it)")
                self._support.idempotence = True
                return producer
            finally:
                sender_log.removeFilter(_quiet_probe)
        producer = self._new_producer(idempotent=False)
        await producer.start()
        return producer

    def _new_producer(self, *, idempotent: bool) -> Any:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=self._linger_ms,
            request_timeout_ms=self._request_timeout_ms,
            **({} if self._max_bytes is None else {"max_request_size": self._max_bytes}),
        )

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
        consumer = self._new_consumer()
        try:
            await consumer.start()
        except KafkaError as exc:
            await _quietly(consumer.stop())
            raise LogError(f"cannot start a consumer for {self._topic}: {exc!r}") from exc
        if self._closing:
            await _quietly(consumer.stop())
            raise LogError("the log is closed")
        tps = [TopicPartition(self._topic, p) for p in range(self._partition_count)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)  # a valid position, so no offset reset is ever attempted
        consumer.pause(*tps)
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
            probe = self._new_consumer(
                auto_offset_reset="earliest", fetch_max_wait_ms=_PROBE_FETCH_WAIT_MS
            )
            try:
                await probe.start()
            except KafkaError as exc:
                await _quietly(probe.stop())
                raise LogError(f"cannot start a consumer for {self._topic}: {exc!r}") from exc
            if self._closing:
                await _quietly(probe.stop())
                raise LogError("the log is closed")
            self._probe = probe
        return self._probe


def _quiet_probe(record: logging.LogRecord) -> bool:
    """While a node probes idempotence, aiokafka's own ERROR line for a refused InitProducerId
    is dropped: the answer gets one line of Cairn's, not two (a filter only for that start)."""
    return record.levelno < logging.ERROR


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


async def _quietly(stopping: Any) -> None:
    """Await a client's stop/close, logging (not raising) its failure so others still stop."""
    try:
        await stopping
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled: never swallowed
        # aiokafka's fetcher awaits the fetch tasks it has just cancelled, so their
        # CancelledError escapes the consumer's stop() (e.g. once the broker is gone); it is not
        # a cancellation of ours, and the other clients must still be stopped.
        _log.warning("a Kafka client's stop raised its own CancelledError", exc_info=True)
    except Exception:
        _log.warning("error while stopping a Kafka client", exc_info=True)
