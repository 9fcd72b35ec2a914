"""Leader-change notices (README "A cluster"): a call held by a node that does not apply its
partition re-attaches as soon as the partition's new leader has announced itself, not at the
30 s re-attach interval. Four ``--cluster`` nodes on Tansu with ``--replication 2``: the
leader of a partition dies (as kill -9) right after committing a result for another node.

Four nodes, not three: with three and R=2, the two survivors both apply every partition after
the kill, so the holder would see the announcement itself; with four, one of the two nodes that
did not apply the partition still does not, and only the notice can wake its calls.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from partition_processor.ids import object_partition_key, partition_of
from tests.e2e.harness import Client, Endpoint, Node
from tests.support.broker import unique_topic

APP = "tests.e2e.apps.failover:app"
PARTITIONS = 4
SESSION_TIMEOUT_S = 3

pytestmark = pytest.mark.timeout(300)


def _node(name: str, tmp_path: Path, bootstrap: str, prefix: str) -> Node:
    flags = ["--cluster", "--cluster-session-timeout-ms", str(SESSION_TIMEOUT_S * 1000)]
    flags += ["--replication", "2", "--node-name", name]
    return Node("kafka", tmp_path / name, bootstrap, PARTITIONS, extra=flags, topic_prefix=prefix)


async def _view(client: Client) -> dict[str, Any]:
    response = await client.admin("GET", "/cluster")
    assert response.status == 200, response.body
    view: dict[str, Any] = response.json()
    return view


async def _settled(clients: list[Client], members: int) -> dict[str, Any] | None:
    """One placement over ``members`` nodes on every node, every partition led."""
    views = [await _view(client) for client in clients]
    placements = {repr([(p["leader"], p["standbys"]) for p in v["partitions"]]) for v in views}
    if len(placements) != 1 or any(v["unreachable"] for v in views):
        return None
    nodes = {n for p in views[0]["partitions"] for n in [p["leader"], *p["standbys"]]}
    led = sorted(p for v in views for p in v["leading"])
    return views[0] if len(nodes) == members and led == list(range(PARTITIONS)) else None


def _keys_on(partition: int, count: int) -> list[str]:
    keys: list[str] = []
    while len(keys) < count:
        key = uuid.uuid4().hex[:10]
        if partition_of(object_partition_key("Tally", key), PARTITIONS) == partition:
            keys.append(key)
    return keys


async def test_calls_on_nodes_not_applying_the_partition_reattach_at_once(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    prefix = unique_topic("notices")
    names = ["a", "b", "c", "d"]
    nodes = {name: _node(name, tmp_path, kafka_bootstrap, prefix) for name in names}
    # Node a exits the first time it would deliver a committed result to another node.
    nodes["a"].process.env = {**nodes["a"].process.env, "CAIRN_CRASH_AT": "delivery.result"}
    endpoint = Endpoint(APP, tmp_path)
    clients: dict[str, Client] = {}
    try:
        endpoint.start()
        await asyncio.gather(*(asyncio.to_thread(node.start) for node in nodes.values()))
        clients = {name: Client(node) for name, node in nodes.items()}
        await clients["a"].register(endpoint)
        everyone = list(clients.values())
        view = await clients["a"].wait_for(lambda: _settled(everyone, 4), timeout_s=90)
        ids = {(await _view(c))["node"]: name for name, c in clients.items()}
        a_id = next(i for i, name in ids.items() if name == "a")
        partition = next(p for p in view["partitions"] if p["leader"] == a_id)
        p = partition["partition"]
        holders = [ids[n] for n in ids if n not in [partition["leader"], *partition["standbys"]]]
        assert len(holders) == 2 and "a" not in holders
        for name in holders:  # they know the service before they take calls for it

            async def knows_tally(c: Client = clients[name]) -> bool:
                services = (await c.admin("GET", "/services")).json()["services"]
                return any(s["name"] == "Tally" for s in services)

            await clients[name].wait_for(knows_tally)
        keys = {name: _keys_on(p, 2) for name in holders}
        calls = {
            (name, key): asyncio.create_task(clients[name].call(f"/Tally/{key}/add", 1))
            for name in holders
            for key in keys[name]
        }
        await clients[holders[0]].wait_for(
            lambda: asyncio.sleep(0, not nodes["a"].process.alive()), timeout_s=60
        )
        crashed_at = time.monotonic()
        answered = asyncio.ensure_future(
            asyncio.wait_for(asyncio.gather(*calls.values()), SESSION_TIMEOUT_S + 5)
        )
        assert "crash point delivery.result reached" in nodes["a"].process.output()
        survivors = [clients[name] for name in names if name != "a"]
        after = await clients[holders[0]].wait_for(lambda: _settled(survivors, 3), timeout_s=60)
        replicas = [after["partitions"][p]["leader"], *after["partitions"][p]["standbys"]]
        # The case at stake: a holder that still does not apply the partition.
        assert any(node_id not in replicas for node_id in [n for n in ids if ids[n] in holders])
        done = await answered
        took = time.monotonic() - crashed_at
        for response in done:
            assert response.status == 200, response.body
            assert response.json() == 1  # each key added to once
        print(f"every call answered {took:.1f} s after the leader died")
    finally:
        for client in clients.values():
            await client.close()
        for name, node in nodes.items():
            print(f"----- {name} -----\n{node.process.output()[-8000:]}")  # shown on failure
            node.stop()
        endpoint.stop()
