"""Two nodes sharing a subscription: Kafka spreads the topic's partitions over both nodes'
consumers, and when one is killed -9 mid-stream the other takes its partitions over; every
key's events still run once each, in order. (Kafka log only: a cluster shares its log.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Client
from tests.e2e.test_cluster import TwoNodes, two_nodes
from tests.e2e.test_subscriptions import (
    EARLIEST,
    _expected,
    _ledger_events,
    _lists,
    _metric,
    _subscribe,
    _wait_lists,
)
from tests.support.broker import unique_topic
from tests.support.kafka_events import create_topic, produce

APP = "tests.e2e.apps.subscriptions:app"
SESSION_TIMEOUT_MS = 3000


Pair = TwoNodes  # nodes a and b of one cluster, and the endpoint


@pytest.fixture
def pair(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Pair]:
    with two_nodes(APP, tmp_path, kafka_bootstrap, "subcluster") as started:
        yield started


@pytest.fixture
async def clients(pair: Pair) -> AsyncIterator[tuple[Client, Client]]:
    a, b = Client(pair.a), Client(pair.b)
    await a.register(pair.endpoint)

    async def b_knows_the_services() -> bool:
        services = (await b.admin("GET", "/services")).json()["services"]
        return any(s["name"] == "Ledger" for s in services)

    await b.wait_for(b_knows_the_services)
    yield a, b
    await a.close()
    await b.close()


@pytest.mark.timeout(900)
async def test_two_nodes_share_a_subscription_and_survive_a_kill_9(
    pair: Pair, clients: tuple[Client, Client], kafka_bootstrap: str
) -> None:
    a, b = clients
    topic = unique_topic("shared")
    await create_topic(kafka_bootstrap, topic, 4)
    # the cluster holding Cairn's own log, under its name
    sub = await _subscribe(a, f"kafka://cairn/{topic}", "service://Ledger/append", EARLIEST)

    async def b_knows_it() -> bool:  # stored in the cluster metadata: every node sees it
        return (await b.admin("GET", f"/subscriptions/{sub}")).status == 200

    await b.wait_for(b_knows_it, 30)
    total, wave = 6000, 500

    async def producer() -> None:
        for start in range(0, total, wave):
            await produce(kafka_bootstrap, topic, _ledger_events(wave, start))
            await asyncio.sleep(0.5)

    producing = asyncio.create_task(producer())

    async def both_consume() -> bool:
        counts = [await _metric(c, "cairn_subscription_records_total", sub) for c in (a, b)]
        return all(count > 0 for count in counts)

    await a.wait_for(both_consume, timeout_s=120, interval_s=0.5)  # each handles a part
    assert not producing.done(), "raise total: the kill must happen mid-stream"
    pair.b.kill()  # kill -9 mid-stream: a takes b's topic partitions (and log partitions) over
    await producing
    expected = _expected(total)
    lists = await _wait_lists(a, expected, timeout_s=600)
    assert lists == expected  # complete, in order, no duplicates


@pytest.mark.timeout(600)
async def test_a_subscription_deleted_through_one_node_stops_on_both(
    pair: Pair, clients: tuple[Client, Client], kafka_bootstrap: str
) -> None:
    a, b = clients
    topic = unique_topic("deleted")
    await create_topic(kafka_bootstrap, topic, 4)
    sub = await _subscribe(a, f"kafka://cairn/{topic}", "service://Ledger/append", EARLIEST)

    async def b_knows_it() -> bool:
        return (await b.admin("GET", f"/subscriptions/{sub}")).status == 200

    await b.wait_for(b_knows_it, 30)

    async def counts() -> list[float]:
        return [await _metric(c, "cairn_subscription_records_total", sub) for c in (a, b)]

    # Waves until both nodes' consumers have appended some (each reads a part of the topic).
    produced, wave = 0, 100
    deadline = asyncio.get_running_loop().time() + 180
    while not all(count > 0 for count in await counts()):
        assert asyncio.get_running_loop().time() < deadline, await counts()
        await produce(kafka_bootstrap, topic, _ledger_events(wave, produced))
        produced += wave
        await asyncio.sleep(0.5)
    expected = _expected(produced)
    assert await _wait_lists(a, expected, timeout_s=240) == expected

    assert (await b.admin("DELETE", f"/subscriptions/{sub}")).status == 202

    async def unlisted_on_both() -> bool:
        for client in (a, b):
            listed = (await client.admin("GET", "/subscriptions")).json()["subscriptions"]
            if sub in {s["id"] for s in listed}:
                return False
        return (await a.admin("GET", f"/subscriptions/{sub}")).status == 404

    await a.wait_for(unlisted_on_both, 10)

    async def stopped_on_both() -> bool:
        line = f"subscription {sub} stopped on this node"
        return all(line in node.process.output() for node in (pair.a, pair.b))

    await a.wait_for(stopped_on_both, 10, interval_s=0.2)  # within seconds of the delete
    before = await counts()
    await produce(kafka_bootstrap, topic, _ledger_events(500, produced))
    # A consumer left running on either node would now read all 4 partitions (the other left
    # the group): give it far more than it needs to append and run them.
    await asyncio.sleep(8.0)
    assert await counts() == before
    assert await _lists(a, list(expected)) == expected
