"""KafkaLog: the log on a Kafka topic with N partitions (DESIGN §3, §10).

The Kafka offset is the LSN. Appends always name their partition and wait for ``acks=all``.
The idempotent producer is on where the broker supports it (detected at start: Apache Kafka has
it, the Tansu test broker lacks InitProducerId); without it a retried send can append a record
twice, so records above this seam are deduplicated anyway (DESIGN §5). Topic creation and the
check of an existing topic's settings live in ``runtime.log.kafka_topics``.

Reading (lanes of consumers, the tail from a fetch's highwater) is in
``runtime.log.kafka_reads``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaConnectionError, KafkaError, UnsupportedVersionError

from runtime.log.base import Log, LogError
from runtime.log.kafka_clients import _quietly
from runtime.log.kafka_reads import KafkaReads, _Lane
from runtime.log.kafka_topics import TopicSpec, ensure_topic
from runtime.log.reachability import Reachability
from runtime.metrics import AppendMeter

__all__ = ["BrokerSupport", "KafkaLog"]

_log = logging.getLogger(__name__)

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


class KafkaLog(KafkaReads, Log):
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
            await self._stop_pumps()
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
        await _all_done(futures)
        for future in futures:
            if error is None:
                error = asyncio.CancelledError() if future.cancelled() else future.exception()
        if error is not None:
            raise LogError(f"append to {self._topic}:{partition} failed: {error!r}") from error
        last: int = futures[-1].result().offset
        self._acked_tail[partition] = max(self._acked_tail[partition], last + 1)
        self._meter.observe(asyncio.get_running_loop().time() - started, len(records))
        return last

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


async def _all_done(futures: list[asyncio.Future[Any]]) -> None:
    """Until every delivery future is done, never cancelling one (aiokafka owns them; a
    cancelled caller leaves them be). One waiter on the last future not done yet: aiokafka
    resolves a batch's futures together, in order, so when the last is done the others mostly
    are too; asyncio.wait would add a callback to each (a record's, per append: issue 7)."""
    loop = asyncio.get_running_loop()
    while pending := [future for future in futures if not future.done()]:
        waiter: asyncio.Future[None] = loop.create_future()
        pending[-1].add_done_callback(functools.partial(_wake, waiter))
        await waiter


def _wake(waiter: asyncio.Future[None], _done: asyncio.Future[Any]) -> None:
    if not waiter.done():  # (cancelled with its caller)
        waiter.set_result(None)


def _quiet_probe(record: logging.LogRecord) -> bool:
    """While a node probes idempotence, aiokafka's own ERROR line for a refused InitProducerId
    is dropped: the answer gets one line of Cairn's, not two (a filter only for that start)."""
    return record.levelno < logging.ERROR
