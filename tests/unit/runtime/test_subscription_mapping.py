"""Subscription specs and the record → Invoke mapping (no broker: pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from partition_processor.commands import IngressSink, Invoke, ProducerDedup, decode_envelope
from partition_processor.ids import subscription_invocation_id, workflow_run_id
from runtime.config import NodeConfig
from runtime.ingress.validation import MAX_JSON_DEPTH
from runtime.metadata import HandlerInfo, InputRules, ServiceInfo
from runtime.subscriptions.records import SourceRecord, map_record
from runtime.subscriptions.spec import (
    SubscriptionError,
    parse_cluster_property,
    parse_clusters,
    parse_sink,
    parse_source,
    validate_options,
)

# The input rules the SDK declares for a handler taking a JSON value, and a bytes one.
JSON_INPUT = InputRules(content_type="application/json", non_empty=True, json=True)
RAW_INPUT = InputRules(content_type="*/*", non_empty=True, json=False)
LEDGER = ServiceInfo(
    "Ledger", "virtual_object", {"append": HandlerInfo("append", "exclusive", input=JSON_INPUT)}
)
ECHO = ServiceInfo(
    "Echo",
    "service",
    {
        "show": HandlerInfo("show", "none", input=JSON_INPUT),
        "raw": HandlerInfo("raw", "none", input=RAW_INPUT),
        "tick": HandlerInfo("tick", "none", input=InputRules(content_type=None)),
    },
)
FLOW = ServiceInfo("Flow", "workflow", {"run": HandlerInfo("run", "workflow", input=JSON_INPUT)})
SINK = IngressSink("node", "req")
LIMITS = NodeConfig(
    data_dir=Path("unused"), max_key_bytes=16, ingress_max_body_bytes=64 * 1024
).size_policy()


def _map(service: ServiceInfo, handler: str, record: SourceRecord) -> tuple[Invoke, ProducerDedup]:
    handler_info = service.handlers[handler]
    mapped = map_record("sub_1", service, handler_info, record, SINK, 4, 1000, LIMITS)
    envelope = decode_envelope(mapped.payload)
    assert isinstance(envelope.command, Invoke) and isinstance(envelope.dedup, ProducerDedup)
    assert envelope.command.invocation_id == mapped.invocation_id
    return envelope.command, envelope.dedup


def _record(key: bytes | None, value: bytes | None, offset: int = 7) -> SourceRecord:
    return SourceRecord("events", 2, offset, 1234, key, value, [("trace", b"t1")])


def test_keyed_record_becomes_an_invoke_of_its_key_with_headers_and_offset_dedup() -> None:
    invoke, dedup = _map(LEDGER, "append", _record(b"alice", b'{"seq": 1}'))
    assert invoke.target.key == "alice" and invoke.argument == b'{"seq": 1}'
    assert invoke.rejected is None and invoke.sink == SINK
    assert invoke.invocation_id == subscription_invocation_id(
        "sub_1", "events", 2, 7, "Ledger", "alice"
    )
    assert dedup == ProducerDedup("sub:sub_1:events:2", 7)
    headers = dict(invoke.headers)
    assert headers["trace"] == "t1" and headers["x-kafka-topic"] == "events"
    assert headers["x-kafka-partition"] == "2" and headers["x-kafka-offset"] == "7"
    assert headers["x-kafka-timestamp"] == "1234" and headers["x-kafka-key"] == "alice"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b"1", "has no key"),
        (b"", b"1", "empty key"),
        (b"\xff", b"1", "not UTF-8"),
        (b"alice", b"{nope", "not valid JSON"),
        (b"k" * 17, b"1", "exceeds the limit of 16 bytes"),
        (b"alice", b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "deeper than"),
        (b"alice", b'"' + b"x" * 64 * 1024 + b'"', "more than the limit"),
    ],
)
def test_a_record_that_cannot_run_is_rejected_not_dropped(
    key: bytes | None, value: bytes, reason: str
) -> None:
    invoke, _ = _map(LEDGER, "append", _record(key, value))
    assert invoke.rejected is not None and reason in invoke.rejected.message
    assert "events/2/7" in invoke.rejected.message  # names the record
    assert invoke.argument == b""


def test_unkeyed_sink_takes_any_record_and_an_empty_value() -> None:
    invoke, _ = _map(ECHO, "show", _record(None, None))
    assert invoke.target.key is None and invoke.rejected is None and invoke.argument == b""


def test_a_raw_handler_gets_the_value_as_it_is_and_a_json_one_only_json() -> None:
    value = b"\xff\x00not json"
    raw, _ = _map(ECHO, "raw", _record(None, value))
    assert raw.rejected is None and raw.argument == value
    deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    assert _map(ECHO, "raw", _record(None, deep))[0].argument == deep
    json_one, _ = _map(ECHO, "show", _record(None, value))
    assert json_one.rejected is not None and "not valid JSON" in json_one.rejected.message


def test_a_handler_without_input_takes_empty_values_and_refuses_others() -> None:
    empty, _ = _map(ECHO, "tick", _record(None, b""))
    assert empty.rejected is None and empty.argument == b""
    full, _ = _map(ECHO, "tick", _record(None, b"{}"))
    assert full.rejected is not None and "takes no input" in full.rejected.message
    assert full.rejected.code == 400


def test_headers_beyond_the_headers_budget_reject_the_record() -> None:
    big = [(f"h{i}", b"v" * 1024) for i in range(LIMITS.headers_bytes // 1024 + 1)]
    record = SourceRecord("events", 2, 7, 1234, None, b"{}", big)
    invoke, _ = _map(ECHO, "show", record)
    assert invoke.rejected is not None and "exceed the limit" in invoke.rejected.message


def test_workflow_run_is_the_keys_one_run_and_a_rejected_one_does_not_take_it() -> None:
    invoke, _ = _map(FLOW, "run", _record(b"k", b"{}"))
    assert invoke.invocation_id == workflow_run_id("Flow", "k") and invoke.submission
    bad, _ = _map(FLOW, "run", _record(b"k", b"{nope"))
    assert bad.invocation_id != workflow_run_id("Flow", "k") and bad.rejected is not None


def test_source_sink_and_cluster_specs() -> None:
    assert parse_source("kafka://c1/my.topic_1") == ("c1", "my.topic_1")
    assert parse_sink("service://Ledger/append") == ("Ledger", "append")
    for bad in ("kafka://c1", "kafka:///t", "kafka://c1/", "kafka://c1/a b", "http://c1/t"):
        with pytest.raises(SubscriptionError) as caught:
            parse_source(bad)
        assert caught.value.status == 400
    for bad in ("service://Ledger", "service:///x", "service://A/b/c", "Ledger/append"):
        with pytest.raises(SubscriptionError):
            parse_sink(bad)
    assert parse_clusters("a=h1:9092, b=h2:9092;h3:9092") == {
        "a": "h1:9092",
        "b": "h2:9092,h3:9092",
    }
    with pytest.raises(ValueError):
        parse_clusters("a")
    assert parse_cluster_property("a:security_protocol=SASL_SSL") == (
        "a",
        "security_protocol",
        "SASL_SSL",
    )
    with pytest.raises(ValueError, match="unknown Kafka client property"):
        parse_cluster_property("a:group_id=x")


def test_options_get_defaults_and_bad_ones_are_refused() -> None:
    assert validate_options({}, 1000) == {
        "auto.offset.reset": "latest",
        "max.in.flight.records": "1000",
    }
    assert (
        validate_options({"auto.offset.reset": "earliest", "max.in.flight.records": "5"}, 9)[
            "max.in.flight.records"
        ]
        == "5"
    )
    for bad in (
        {"auto.offset.reset": "none"},
        {"max.in.flight.records": "-1"},
        {"max.in.flight.records": "x"},
        {"group.id": "g"},
    ):
        with pytest.raises(SubscriptionError) as caught:
            validate_options(bad, 1000)
        assert caught.value.status == 400
