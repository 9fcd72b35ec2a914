"""One Kafka record → one ``Invoke`` record of Cairn's log (DESIGN §8a).

The record's value is the handler's input, under the handler's input rules as an HTTP body with
the content type the handler accepts would be (``runtime/ingress/content.py``): a JSON handler
gets a value checked as the ingress checks a JSON body (valid, nested at most ``MAX_JSON_DEPTH``),
a raw (bytes) handler gets the bytes as they are, an empty value is an absent body. For
virtual-object and workflow sinks its key (UTF-8, at most the size policy's key bytes) is the
object key. Its headers, plus its position and timestamp
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
from runtime.ingress.validation import InvalidRequest, check_json, check_text, forwarded_headers
from runtime.limits import SizePolicy
from runtime.metadata import DAY_MS, HandlerInfo, InputRules, ServiceInfo, completion_retention_ms
from runtime.security.headers import HeaderSeal

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
    limits: SizePolicy,
    seal: HeaderSeal | None = None,
) -> MappedRecord:
    keyed = service.service_type != "service"
    where = f"{record.topic}/{record.partition}/{record.offset}"
    key: str | None = None
    problem: str | None = None
    if keyed:
        key, problem = _object_key(record.key, service.name, where, limits)
    value = record.value or b""
    headers = [(name.lower(), raw.decode(errors="replace")) for name, raw in record.headers]
    if problem is None:
        problem = _input_problem(handler.input, value, where, limits)
    if problem is None:
        try:
            forwarded_headers(headers, limits)
        except InvalidRequest as exc:
            problem = f"record {where}: {exc.message}"
    if seal is not None:
        headers = seal.seal(headers)  # secret headers (README, Security) stored encrypted only
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


def _object_key(
    raw: bytes | None, service: str, where: str, limits: SizePolicy
) -> tuple[str | None, str | None]:
    """The object key of a keyed sink's record, or why the record has none."""
    if raw is None:
        return None, f"record {where} has no key, but {service} is keyed"
    try:
        key = raw.decode()
    except UnicodeDecodeError:
        return None, f"the key of record {where} is not UTF-8"
    if key == "":
        return None, f"record {where} has an empty key, but {service} is keyed"
    try:
        check_text(key, f"the key of record {where}", limits)
    except InvalidRequest as exc:
        return None, exc.message
    return key, None


def _input_problem(rules: InputRules, value: bytes, where: str, limits: SizePolicy) -> str | None:
    """Why the value cannot be the handler's input, or None. As at the ingress, an empty value
    is an absent body and a non-empty one a body of the type the handler accepts."""
    if len(value) > limits.body_bytes:
        return (
            f"the value of record {where} has {len(value)} bytes, more than the limit of "
            f"{limits.body_bytes} bytes"
        )
    if not value:
        if rules.required:
            return f"the value of record {where} is empty, but the handler requires an input"
        return None
    if rules.content_type is None:
        return f"record {where} has a value, but the handler takes no input"
    if rules.json:
        try:
            check_json(value)
        except InvalidRequest as exc:
            return exc.message.replace("the body", f"the value of record {where}", 1)
    return None
