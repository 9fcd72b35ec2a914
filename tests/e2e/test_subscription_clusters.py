"""Kafka clusters of subscriptions given only through the environment (``CAIRN_KAFKA_CLUSTERS``,
``CAIRN_KAFKA_CLUSTER_PROPERTIES``), on a real ``cairn server``: events of a cluster named only
there flow, and a cluster's client properties reach the aiokafka consumer (SASL properties make
it fail against the plaintext test broker, which the same cluster without them reads).
Every test runs on both logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import Client
from tests.e2e.test_subscriptions import EARLIEST, _lists, _metric, _subscribe
from tests.support.broker import unique_topic
from tests.support.kafka_events import Event, create_topic, produce

APP = "tests.e2e.apps.subscriptions:app"
SASL_PROPERTIES = ";".join(
    f"sasl:{key}={value}"
    for key, value in (
        ("security_protocol", "SASL_PLAINTEXT"),
        ("sasl_mechanism", "PLAIN"),
        ("sasl_plain_username", "ada"),
        ("sasl_plain_password", "secret"),
    )
)


@pytest.fixture(scope="module")
def env_node(
    log_kind: str,
    bootstrap: str | None,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    # No --kafka-cluster flag: both clusters are the test broker, named only in the environment.
    env = {
        "CAIRN_KAFKA_CLUSTERS": f"events={kafka_bootstrap},sasl={kafka_bootstrap}",
        "CAIRN_KAFKA_CLUSTER_PROPERTIES": SASL_PROPERTIES,
    }
    directory = tmp_path_factory.mktemp("envclusters")
    started = start_cluster(APP, log_kind, directory, bootstrap, env=env)
    assert "--kafka-cluster" not in " ".join(started.node.process.argv)
    yield started
    stop_cluster(started)


@pytest.fixture
async def http(env_node: Cluster) -> AsyncIterator[Client]:
    client = Client(env_node.node)
    yield client
    await client.close()


def _events(key: str, count: int) -> list[Event]:
    return [(key.encode(), json.dumps({"seq": i}).encode(), ()) for i in range(count)]


async def test_a_cluster_named_only_in_the_environment_is_read(
    env_node: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("envcluster")
    await create_topic(kafka_bootstrap, topic, 2)
    key = unique_topic("key")
    await produce(kafka_bootstrap, topic, _events(key, 5))
    sub = await _subscribe(http, f"kafka://events/{topic}", "service://Ledger/append", EARLIEST)

    async def done() -> list[int] | None:
        seqs = (await _lists(http, [key]))[key]
        return seqs if len(seqs) >= 5 else None

    assert await http.wait_for(done, 90, interval_s=0.5) == list(range(5))
    assert await _metric(http, "cairn_subscription_records_total", sub) == 5


@pytest.mark.timeout(300)
async def test_cluster_properties_from_the_environment_reach_the_consumer(
    env_node: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    """The ``sasl`` cluster is the same broker as ``events`` with SASL client properties: the
    test broker does not speak SASL, so its consumer fails (and is retried) where the other
    reads. Were the properties dropped on the way to aiokafka, it would read the events."""
    topic = unique_topic("sasl")
    await create_topic(kafka_bootstrap, topic, 1)
    key = unique_topic("key")
    await produce(kafka_bootstrap, topic, _events(key, 3))
    sub = await _subscribe(http, f"kafka://sasl/{topic}", "service://Ledger/append", EARLIEST)
    task = f"subscription-{sub}"

    async def reported() -> list[Any] | None:
        health = await http.call("/restate/health", method="GET")
        assert health.status == 200, health.body  # a failing consumer is not the node's health
        tasks = health.json().get("tasks", [])
        return tasks if any(t["name"] == task for t in tasks) else None

    tasks = await http.wait_for(reported, 120, interval_s=0.5)
    assert next(t for t in tasks if t["name"] == task)["reason"].startswith(
        "subscription restarting after"
    )

    async def sasl_refused() -> bool:
        # aiokafka's own report of the SASL handshake the broker refused
        return "UnsupportedSaslMechanism" in env_node.node.process.output()

    await http.wait_for(sasl_refused, 60, interval_s=0.5)
    assert (await _lists(http, [key]))[key] == []  # nothing was read through it
    assert await _metric(http, "cairn_subscription_records_total", sub) == 0
    # the same broker without the properties: the events are there to be read
    control = await _subscribe(http, f"kafka://events/{topic}", "service://Ledger/append", EARLIEST)

    async def read() -> bool:
        return await _metric(http, "cairn_subscription_records_total", control) == 3

    await http.wait_for(read, 90, interval_s=0.5)
    assert (await http.admin("DELETE", f"/subscriptions/{sub}")).status == 202
