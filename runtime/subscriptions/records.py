"""One Kafka record → one ``Invoke`` record of Cairn's log (DESIGN §8a).

The record's value is the handler's input (JSON, as an HTTP body); for virtual-object and
workflow sinks its key (UTF-8) is the object key. Its headers, plus its position and timestamp
under the ``x-kafka-*`` names below, reach the handler as ``ctx.request().headers``. A record that
cannot become a runnable invocation is appended as an already failed one (``Invoke.rejected``),
so it is kept and visible and the records after it go on.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from partition_processor.commands import (
    Envelope,
    IngressSink,
    Invoke,
    ProducerDedup,
    SubscriptionSource,
    Target,
    encode_envelope,
)
from partition_processor.ids import (
    parse_partition_key,
    partition_of,
    subscription_invocation_id,
    workflow_run_id,
)
from partition_processor.journal import Failure
from runtime.metadata import DAY_MS, HandlerInfo, ServiceInfo, completion_retention_ms

TOPIC_HEADER = "x-kafka-topic"
PARTITION_HEADER = "x-kafka-partition"
OFFSET_HEADER = "x-kafka-offset"
TIMESTAMP_HEADER = "x-kafka-timestamp"
KEY_HEADER = "x-kafka-key"
# The code of a record that could not become an invocation (shown on its failed status).
REJECTED_CODE = 400


class SourceRecord(msgspec.Struct, frozen=True):
    """The parts of a Kafka record a subscription uses."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


class MappedRecord(msgspec.Struct, frozen=True):
    invocation_id: str
    log_partition: int
    payload: bytes
    rejected: bool


def producer_id(subscription_id: str, topic: str, partition: int) -> str:
    """The dedup producer of one source partition: its offsets are the sequence numbers, so a
    record appended twice (re-read after a crash or by a new group member) is dropped."""
    return f"sub:{subscription_id}:{topic}:{partition}"


def map_record(
    subscription_id: str,
    service: ServiceInfo,
    handler: HandlerInfo,
    record: SourceRecord,
    sink: IngressSink,
    log_partitions: int,
    now_ms: int,
) -> MappedRecord:
    keyed = service.service_type != "service"
    where = f"{record.topic}/{record.partition}/{record.offset}"
    key: str | None = None
    problem: str | None = None
    if keyed:
        if record.key is None:
            problem = f"record {where} has no key, but {service.name} is keyed"
        else:
            try:
                key = record.key.decode()
            except UnicodeDecodeError:
                problem = f"the key of record {where} is not UTF-8"
            if key == "":
                key, problem = None, f"record {where} has an empty key, but {service.name} is keyed"
    value = record.value or b""
    if problem is None and value.strip():
        try:
            msgspec.json.decode(value)
        except msgspec.DecodeError as exc:
            problem = f"the value of record {where} is not valid JSON: {exc}"
    target = Target(service.name, handler.name, service.service_type, handler.kind, key)
    # A workflow runs once per key: its run's id is the key's. A rejected record gets its own id,
    # so it neither burns the key nor hides behind a run that exists.
    workflow_run = handler.kind == "workflow" and key is not None and problem is None
    if workflow_run:
        assert key is not None
        invocation_id = workflow_run_id(service.name, key)
    else:
        invocation_id = subscription_invocation_id(
            subscription_id, record.topic, record.partition, record.offset, service.name, key
        )
    headers = [(name.lower(), raw.decode(errors="replace")) for name, raw in record.headers]
    headers += [
        (TOPIC_HEADER, record.topic),
        (PARTITION_HEADER, str(record.partition)),
        (OFFSET_HEADER, str(record.offset)),
        (TIMESTAMP_HEADER, str(record.timestamp_ms)),
    ]
    if record.key is not None:
        headers.append((KEY_HEADER, record.key.decode(errors="replace")))
    invoke = Invoke(
        invocation_id=invocation_id,
        target=target,
        argument=b"" if problem is not None else value,
        headers=headers,
        sink=sink,
        retry_policy=handler.retry_policy,
        # a rejected record stays visible for a day; others as any call without idempotency key
        completion_retention_ms=DAY_MS if problem else completion_retention_ms(handler, False),
        submission=workflow_run,
        rejected=Failure(REJECTED_CODE, problem) if problem is not None else None,
    )
    envelope = Envelope(
        SubscriptionSource(subscription_id),
        now_ms,
        invoke,
        ProducerDedup(producer_id(subscription_id, record.topic, record.partition), record.offset),
    )
    log_partition = partition_of(parse_partition_key(invocation_id), log_partitions)
    return MappedRecord(
        invocation_id, log_partition, encode_envelope(envelope), problem is not None
    )
