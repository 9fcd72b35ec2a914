"""The Kafka topics Cairn creates, the check of existing ones, and producer idempotence detection
(issue 9 item 3; README "Kafka"), on the real Tansu broker.

Tansu keeps the configs a topic is created with and answers DescribeConfigs with exactly those,
so the tests describe the created topics through the admin client; what Tansu does not model
(a replication factor above its one broker, a cluster of several brokers) is checked on the
function that builds the CreateTopics entry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from runtime.log import KafkaLog, LogError
from runtime.log.kafka import BrokerSupport
from runtime.log.kafka_topics import TopicSpec, new_topic, unsafe_settings
from runtime.metadata import Deployment, Registry, Subscription
from runtime.supervisor import Supervisor
from tests.support.broker import unique_topic


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[Any]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _described(admin: Any, topic: str) -> tuple[dict[str, str], int]:
    """The topic's configs and its replication factor, as the broker describes them."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    configs = {
        entry[0]: entry[1]
        for response in responses
        for _code, _message, _type, name, entries in response.resources
        if name == topic
        for entry in entries
    }
    (described,) = await admin.describe_topics([topic])
    return configs, min(len(p["replicas"]) for p in described["partitions"])


async def test_created_topics_carry_cairns_settings(kafka_bootstrap: str, admin: Any) -> None:
    """Described through the admin client: the log has no retention, the metadata is compacted,
    both have min.insync.replicas = RF-1 (≥1) for the replication factor the cluster allows."""
    prefix = unique_topic("settings")
    support = BrokerSupport()
    log = KafkaLog(kafka_bootstrap, f"{prefix}.log", 3, max_record_bytes=2_000_000, support=support)
    metadata = KafkaLog(kafka_bootstrap, f"{prefix}.metadata", 1, compacted=True, support=support)
    await log.start()
    await metadata.start()
    try:
        configs, replicas = await _described(admin, f"{prefix}.log")
        # One broker: the default replication factor 3 is lowered to 1, min.insync to 1.
        assert replicas == 1
        assert configs["retention.ms"] == "-1"
        assert configs["retention.bytes"] == "-1"
        assert configs["cleanup.policy"] == "delete"
        assert configs["min.insync.replicas"] == "1"
        assert int(configs["max.message.bytes"]) >= 2_000_000
        configs, replicas = await _described(admin, f"{prefix}.metadata")
        assert replicas == 1
        assert configs["cleanup.policy"] == "compact"
        assert configs["min.insync.replicas"] == "1"
        assert "retention.ms" not in configs
    finally:
        await log.close()
        await metadata.close()


def test_the_create_request_on_a_larger_cluster() -> None:
    """What Cairn sends (Tansu has one broker, so this is the function building the request)."""
    spec = TopicSpec("c.log", 24, compacted=False, replication_factor=3, max_message_bytes=1 << 24)
    five = new_topic(spec, brokers=5)
    assert (five.name, five.num_partitions, five.replication_factor) == ("c.log", 24, 3)
    assert five.topic_configs == {
        "min.insync.replicas": "2",
        "cleanup.policy": "delete",
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "max.message.bytes": str(1 << 24),
    }
    two = new_topic(spec, brokers=2)
    assert (two.replication_factor, two.topic_configs["min.insync.replicas"]) == (2, "1")
    metadata = new_topic(TopicSpec("c.metadata", 1, compacted=True, replication_factor=5), 7)
    assert metadata.replication_factor == 5
    assert metadata.topic_configs["cleanup.policy"] == "compact"
    assert metadata.topic_configs["min.insync.replicas"] == "4"
    # RF 1 on a multi-broker cluster is reported for an existing topic, and so is a
    # min.insync.replicas that acks=all can never meet, or one that waits for too few copies.
    assert any("replication factor 1 on a 3-broker" in p for p in unsafe_settings(spec, {}, 1, 3))
    [too_many] = unsafe_settings(spec, {"min.insync.replicas": "3"}, 2, 2)
    assert "min.insync.replicas=3 exceeds its 2 replicas" in too_many
    [too_few] = unsafe_settings(spec, {"min.insync.replicas": "1"}, 3, 3)
    assert "set min.insync.replicas=2" in too_few
    assert unsafe_settings(spec, {"min.insync.replicas": "2", "retention.ms": "-1"}, 3, 3) == []


async def test_existing_topics_with_unsafe_settings_are_reported(
    kafka_bootstrap: str, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_topic("unsafe")
    await admin.create_topics(
        [
            NewTopic(
                f"{prefix}.log",
                2,
                1,
                topic_configs={
                    "retention.ms": "604800000",
                    "retention.bytes": "-1",
                    "cleanup.policy": "delete",
                    "max.message.bytes": "1000",
                    "min.insync.replicas": "1",
                },
            ),
            NewTopic(
                f"{prefix}.metadata",
                1,
                1,
                topic_configs={
                    "cleanup.policy": "delete",
                    "retention.ms": "86400000",
                    "min.insync.replicas": "1",
                },
            ),
        ]
    )
    log = KafkaLog(kafka_bootstrap, f"{prefix}.log", 2, max_record_bytes=100_000)
    metadata = KafkaLog(kafka_bootstrap, f"{prefix}.metadata", 1, compacted=True)
    with caplog.at_level(logging.WARNING, logger="runtime.log.kafka_topics"):
        await log.start()
        await metadata.start()
    await log.close()
    await metadata.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "runtime.log.kafka_topics"]
    assert len(lines) == 4, lines
    assert any(f"{prefix}.log: retention.ms=604800000 deletes records" in x for x in lines)
    assert any(f"{prefix}.log: max.message.bytes=1000 is below" in x for x in lines)
    assert any(f"{prefix}.metadata: cleanup.policy=delete is not compacted" in x for x in lines)
    assert any(f"{prefix}.metadata: cleanup.policy includes delete" in x for x in lines)


async def test_settings_the_broker_does_not_report_are_one_line(
    kafka_bootstrap: str, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Tansu reports only the configs a topic was created with: an existing topic created
    without any is 'not checked' in one line, and the node starts."""
    topic = unique_topic("bare")
    await admin.create_topics([NewTopic(topic, 1, 1)])
    log = KafkaLog(kafka_bootstrap, topic, 1)
    with caplog.at_level(logging.INFO, logger="runtime.log.kafka_topics"):
        await log.start()
    try:
        await log.append(0, [b"x"])
    finally:
        await log.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "runtime.log.kafka_topics"]
    assert lines == [
        f"topic {topic}: the broker did not report cleanup.policy, retention.ms, "
        "retention.bytes, min.insync.replicas; those settings are not checked"
    ]


async def test_an_existing_topic_with_another_partition_count_stops_the_start(
    kafka_bootstrap: str, admin: Any
) -> None:
    topic = unique_topic("count")
    await admin.create_topics([NewTopic(topic, 3, 1)])
    log = KafkaLog(kafka_bootstrap, topic, 5)
    with pytest.raises(LogError, match=f"topic {topic} has 3 partitions, not 5 .*--partitions"):
        await log.start()
    await log.close()


async def test_idempotence_is_detected_off_on_tansu_once_and_appends_work(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_topic("idem")
    support = BrokerSupport()
    log = KafkaLog(kafka_bootstrap, f"{prefix}.log", 1, support=support)
    metadata = KafkaLog(kafka_bootstrap, f"{prefix}.metadata", 1, compacted=True, support=support)
    with caplog.at_level(logging.INFO, logger="runtime.log.kafka"):
        await log.start()
        await metadata.start()
    try:
        assert support.idempotence is False
        assert not log.idempotent
        lines = [r.getMessage() for r in caplog.records if r.name == "runtime.log.kafka"]
        assert len([x for x in lines if "idempotent producer" in x]) == 1, lines
        # aiokafka's own ERROR about the refused InitProducerId is not a second line.
        assert not [r for r in caplog.records if r.name.startswith("aiokafka.producer")]
        assert await log.append(0, [b"a", b"b"]) == 1
        assert await metadata.append(0, [b"v"], [b"k"]) == 0
        async for batch in metadata.read(0, 0):
            assert [r.payload for r in batch] == [b"v"]
            break
    finally:
        await log.close()
        await metadata.close()


async def test_metadata_records_reach_kafka_under_their_keys(kafka_bootstrap: str) -> None:
    """What the compacted topic keys on: read back raw, every record has its fact's key."""
    topic = unique_topic("keyed")
    log = KafkaLog(kafka_bootstrap, topic, 1, compacted=True)
    await log.start()
    supervisor = Supervisor()
    registry = Registry(log)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        await registry.start(supervisor)
        await registry.register(Deployment("dp_1", "http://x", []))
        await registry.join("a/1", "http://a", "http://a:1")
        await registry.publish_positions("a/1", [3])
        await registry.add_subscription(Subscription("sub_1", "kafka://c/t", "service://S/h"))
        await registry.leave("a/1")
        await consumer.start()
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        keys: list[bytes | None] = []
        while len(keys) < 6:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            keys += [record.key for record in batch.get(tp, [])]
        assert keys == [
            b"deployment/dp_1",
            b"node/a/1",
            b"positions/a/1",
            b"subscription/sub_1",
            b"node/a/1",
            b"positions/a/1",
        ]
    finally:
        await consumer.stop()
        await registry.stop()
        await supervisor.shutdown()
        await log.close()
