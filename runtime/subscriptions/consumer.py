"""The consumer of one subscription on this node (DESIGN §8a).

Every node runs one consumer per subscription, all in the consumer group of the subscription, so
Kafka spreads the topic's partitions over the nodes. For each batch of a source partition:

1. every record becomes an ``Invoke`` record (``records.map_record``), appended to the log with a
   ``ProducerDedup(subscription/topic/partition, offset)``: a record appended again (re-read after
   a crash, or by the member that takes the partition over) is dropped when applied;
2. appends keep offset order per log partition, so the records of one key are applied, and their
   exclusive invocations start, in offset order;
3. only once the appends are durable is the source offset committed.

Back-pressure: an appended record holds one of ``max.in.flight.records`` slots until its
invocation completes. Completion comes from the sink of its ``Invoke`` (the partition's leader
answers this node when it completes). A record that was a duplicate, or whose answer was lost in
a leadership change, is asked again with an ``Attach`` on the same sink after a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from partition_processor.commands import (
    Attach,
    Envelope,
    IngressSink,
    SubscriptionSource,
    encode_envelope,
)
from runtime.clock import now_ms
from runtime.crashpoints import crash_point
from runtime.ingress.gateway import PendingResponses
from runtime.limits import SizePolicy
from runtime.log import Log, LogError
from runtime.metadata import HandlerInfo, Registry, ServiceInfo, Subscription
from runtime.metrics import (
    SUBSCRIPTION_IN_FLIGHT,
    SUBSCRIPTION_LAG,
    SUBSCRIPTION_RECORDS,
    SUBSCRIPTION_REJECTED,
)
from runtime.security.headers import HeaderSeal
from runtime.subscriptions.records import MappedRecord, SourceRecord, map_record
from runtime.subscriptions.spec import (
    MAX_IN_FLIGHT,
    OFFSET_RESET,
    KafkaCluster,
    SubscriptionError,
    parse_source,
    resolve_sink,
)

log = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 30.0
_CHUNK_RECORDS = 256
_POLL_MS = 200
# An in-flight record not heard of for this long is asked about again (an Attach on its sink).
_REASK_AFTER_S = 10.0


def group_id(subscription_id: str) -> str:
    """The consumer group of a subscription: one per subscription, shared by every node."""
    return f"cairn-subscription-{subscription_id}"


@dataclass
class _InFlight:
    invocation_id: str
    log_partition: int
    asked_s: float


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: _Session) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self._owner.forget_partition(tp)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._owner.partitions_assigned(assigned)


@dataclass(frozen=True)
class ConsumerContext:
    """What a node gives the consumers of its subscriptions."""

    registry: Registry
    log: Log
    node_id: str
    responses: PendingResponses
    session_timeout_ms: int
    fetch_max_wait_ms: int
    default_max_in_flight: int
    # Keys, values and headers of records are held to the node's size policy, as requests are.
    limits: SizePolicy
    # Seals the secret headers of records, as the ingress does (None: stored as they come).
    seal: HeaderSeal | None = None


class SubscriptionConsumer:
    """Runs one subscription on this node: the body of the supervised task
    ``subscription-<id>``."""

    def __init__(
        self, subscription: Subscription, cluster: KafkaCluster, context: ConsumerContext
    ) -> None:
        self.subscription = subscription
        self._cluster = cluster
        self._context = context

    async def run(self) -> None:
        """One incarnation: consume until cancelled. A failure (broker unreachable, a bug) ends
        it; the supervisor logs and counts it and runs this again after its backoff, from the
        committed offsets: nothing is skipped, and what is appended again is dropped as a
        duplicate."""
        session = _Session(self.subscription, self._cluster, self._context)
        try:
            await session.run()
        finally:
            await session.close()


class _Session:
    """One incarnation of a consumer: a Kafka consumer and the records it has in flight."""

    def __init__(
        self, subscription: Subscription, cluster: KafkaCluster, context: ConsumerContext
    ) -> None:
        sub = subscription
        self._subscription = subscription
        self._cluster = cluster
        self._context = context
        self._responses = context.responses
        self._log = context.log
        self._id = sub.id
        _, self._topic = parse_source(sub.source)
        self._latest = sub.options.get(OFFSET_RESET, "latest") == "latest"
        self._max_in_flight = int(
            sub.options.get(MAX_IN_FLIGHT, str(context.default_max_in_flight))
        )
        self._slots = asyncio.Semaphore(self._max_in_flight)
        self._in_flight: dict[str, _InFlight] = {}
        self._next: dict[TopicPartition, int] = {}
        self._unsettled: set[TopicPartition] = set()
        self._consumer: Any = None
        self._reasker: asyncio.Task[None] | None = None

    async def run(self) -> None:
        session_timeout_ms = self._context.session_timeout_ms
        self._consumer = AIOKafkaConsumer(
            group_id=group_id(self._id),
            enable_auto_commit=False,
            # "latest" is done by hand (partitions_assigned / _settle): the test broker answers
            # "latest" wrongly when the last batch holds several records (DESIGN §10).
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 6),
            fetch_max_wait_ms=self._context.fetch_max_wait_ms,
            **self._cluster.client_options(),
        )
        self._consumer.subscribe([self._topic], listener=_Listener(self))
        await self._consumer.start()
        # A child of this incarnation: it ends with it, and its failure ends it (checked below).
        self._reasker = asyncio.create_task(self._reask(), name=f"subscription-reask-{self._id}")
        while True:
            if self._reasker.done():
                await self._reasker  # raises what it failed with
                raise RuntimeError("the re-ask loop of the subscription ended")
            batches = await self._consumer.getmany(timeout_ms=_POLL_MS, max_records=_CHUNK_RECORDS)
            settled = {tp for tp in list(self._unsettled) if await self._settle(tp)}
            for tp, records in batches.items():
                if tp in self._unsettled or tp in settled or tp not in self._consumer.assignment():
                    continue  # read before the "latest" position was known, or revoked since
                await self._ingest(tp, records)
            self._report_lag()

    async def close(self) -> None:
        if self._reasker is not None:
            self._reasker.cancel()
            await asyncio.gather(self._reasker, return_exceptions=True)
        for request_id in list(self._in_flight):
            self._responses_forget(request_id)
        SUBSCRIPTION_IN_FLIGHT.labels(self._id).set(0)
        for tp in list(self._next):
            self.forget_partition(tp)
        if self._consumer is not None:
            await self._consumer.stop()  # leaves the group: its partitions move at once

    # ------------------------------------------------------------------ positions

    async def partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        for tp in assigned:
            if self._latest and await self._consumer.committed(tp) is None:
                self._unsettled.add(tp)

    def forget_partition(self, tp: TopicPartition) -> None:
        self._unsettled.discard(tp)
        if self._next.pop(tp, None) is not None:
            try:
                SUBSCRIPTION_LAG.remove(self._id, tp.topic, str(tp.partition))
            except KeyError:
                pass

    async def _settle(self, tp: TopicPartition) -> bool:
        """First read of a partition under "latest": start at the highwater mark of the first
        fetch response (never ``seek_to_end``/``end_offsets``, DESIGN §10) and commit it, so the
        group resumes there whichever member reads the partition next."""
        highwater = self._consumer.highwater(tp)
        if highwater is None:
            return False
        self._consumer.seek(tp, highwater)
        self._unsettled.discard(tp)
        self._next[tp] = highwater
        await self._commit(tp, highwater)
        return True

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self._consumer.commit({tp: offset})
        except KafkaError as exc:
            # Revoked meanwhile: the next member starts from the previous commit and its
            # re-appends are dropped as duplicates.
            log.warning("subscription %s: commit of %s@%d failed: %r", self._id, tp, offset, exc)

    def _report_lag(self) -> None:
        for tp, next_offset in self._next.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - next_offset)
                SUBSCRIPTION_LAG.labels(self._id, tp.topic, str(tp.partition)).set(lag)

    # ------------------------------------------------------------------ ingestion

    async def _ingest(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        # A chunk never needs more slots than exist: the slots of the chunks before it are freed
        # as their invocations complete, so waiting for a slot cannot deadlock.
        chunk = min(_CHUNK_RECORDS, self._max_in_flight)
        for start in range(0, len(records), chunk):
            if tp not in self._consumer.assignment():
                return  # revoked while waiting for slots: the new owner reads on
            await self._ingest_chunk(tp, records[start : start + chunk])

    async def _ingest_chunk(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        service, handler = await self._sink()
        mapped: list[MappedRecord] = []
        for record in records:
            await self._slots.acquire()
            mapped.append(self._map(service, handler, record))
        await self._append(mapped)
        crash_point("subscription.after_append")  # appended, offset not committed yet
        SUBSCRIPTION_RECORDS.labels(self._id).inc(len(mapped))
        rejected = sum(1 for m in mapped if m.rejected)
        if rejected:
            SUBSCRIPTION_REJECTED.labels(self._id).inc(rejected)
            log.warning(
                "subscription %s: %d record(s) of %s kept as failed", self._id, rejected, tp
            )
        next_offset = records[-1].offset + 1
        if tp not in self._consumer.assignment():
            return  # revoked meanwhile: the new owner commits (and reports its lag)
        self._next[tp] = next_offset
        await self._commit(tp, next_offset)
        self._report_lag()  # also while a long batch waits for in-flight slots

    async def _sink(self) -> tuple[ServiceInfo, HandlerInfo]:
        """The sink handler; waits (without consuming) while it is not registered."""
        while True:
            try:
                return resolve_sink(self._context.registry, self._subscription.sink)
            except SubscriptionError as exc:
                log.warning("subscription %s paused: %s", self._id, exc.message)
                await asyncio.sleep(1.0)

    def _map(self, service: ServiceInfo, handler: HandlerInfo, record: Any) -> MappedRecord:
        request_id = f"sub-{uuid.uuid4().hex}"
        source = SourceRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key,
            value=record.value,
            headers=list(record.headers or ()),
        )
        mapped = map_record(
            self._id,
            service,
            handler,
            source,
            IngressSink(self._context.node_id, request_id),
            self._log.partitions,
            now_ms(),
            self._context.limits,
            self._context.seal,
        )
        self._in_flight[request_id] = _InFlight(
            mapped.invocation_id, mapped.log_partition, time.monotonic()
        )
        done = self._responses.expect(request_id)
        done.add_done_callback(lambda _: self._completed(request_id))
        SUBSCRIPTION_IN_FLIGHT.labels(self._id).inc()
        return mapped

    def _completed(self, request_id: str) -> None:
        if self._in_flight.pop(request_id, None) is not None:
            self._slots.release()
            SUBSCRIPTION_IN_FLIGHT.labels(self._id).dec()

    def _responses_forget(self, request_id: str) -> None:
        self._in_flight.pop(request_id, None)
        self._responses.forget(request_id)

    async def _append(self, mapped: Sequence[MappedRecord]) -> None:
        """Append, keeping offset order within each log partition; returns once durable."""
        by_partition: dict[int, list[bytes]] = {}
        for record in mapped:
            by_partition.setdefault(record.log_partition, []).append(record.payload)
        await asyncio.gather(
            *(self._append_partition(p, payloads) for p, payloads in by_partition.items())
        )

    async def _append_partition(self, partition: int, payloads: list[bytes]) -> None:
        backoff = _BACKOFF_MIN_S
        while True:
            try:
                await self._log.append(partition, payloads)
                return
            except LogError as exc:
                # Some may be appended already: appending them again is safe (dedup).
                log.warning("subscription %s: append failed (%r), retrying", self._id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _reask(self) -> None:
        """Ask again for invocations whose completion was not heard of: a duplicate record
        (dropped on apply, so it answers nothing), or an answer lost with a leader change."""
        while True:
            await asyncio.sleep(_REASK_AFTER_S / 2)
            cutoff = time.monotonic() - _REASK_AFTER_S
            for request_id, entry in list(self._in_flight.items()):
                if entry.asked_s > cutoff:
                    continue
                entry.asked_s = time.monotonic()
                sink = IngressSink(self._context.node_id, request_id)
                envelope = Envelope(
                    SubscriptionSource(self._id), now_ms(), Attach(entry.invocation_id, sink)
                )
                try:
                    await self._log.append(entry.log_partition, [encode_envelope(envelope)])
                except LogError as exc:
                    log.warning("subscription %s: re-attach failed: %r", self._id, exc)
