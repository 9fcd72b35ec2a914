"""Cluster membership in the metadata (issue 7 item 6): a node that stops cleanly is removed from
the other nodes' registry at once; a node that died is removed after the node expiry. Both
nodes run on Tansu, so they also show the idempotence detection (off, one line) and serve."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Client, Node
from tests.support.broker import unique_topic

# Short heartbeats and expiry, so that a dead node is removed within seconds.
HEARTBEAT_MS = 300
EXPIRY_MS = 3000


def _node(name: str, directory: Path, bootstrap: str, prefix: str) -> Node:
    flags = [
        "--cluster",
        "--cluster-session-timeout-ms",
        "3000",
        "--node-name",
        name,
        "--applied-positions-interval-ms",
        str(HEARTBEAT_MS),
        "--cluster-node-expiry-ms",
        str(EXPIRY_MS),
    ]
    return Node("kafka", directory / name, bootstrap, 2, extra=flags, topic_prefix=prefix)


@pytest.fixture
def nodes(tmp_path: Path, kafka_bootstrap: str) -> Iterator[tuple[Node, Node]]:
    prefix = unique_topic("members")
    a = _node("a", tmp_path, kafka_bootstrap, prefix)
    b = _node("b", tmp_path, kafka_bootstrap, prefix)
    a.start()
    b.start()
    yield a, b
    for node in (a, b):
        print(f"----- {node.admin} -----\n{node.process.output()[-8000:]}")
        node.stop()


async def _members(client: Client) -> list[str]:
    response = await client.admin("GET", "/cluster")
    assert response.status == 200
    return sorted(response.json()["nodes"])


async def _both_known(client: Client) -> list[str] | None:
    members = await _members(client)
    return members if len(members) == 2 else None


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_a_node_that_left_is_removed_from_the_registry(
    nodes: tuple[Node, Node], how: str
) -> None:
    a, b = nodes
    client = Client(a)
    try:
        members = await client.wait_for(lambda: _both_known(client), timeout_s=30)
        b_id = next(m for m in members if m.startswith("b/"))
        a_id = next(m for m in members if m.startswith("a/"))
        started = asyncio.get_running_loop().time()
        if how == "stop":
            b.stop()  # SIGTERM: b publishes that it left
        else:
            b.kill()  # kill -9: a removes b once it was silent for the expiry

        async def b_removed() -> bool:
            return await _members(client) == [a_id]

        await client.wait_for(b_removed, timeout_s=30)
        elapsed = asyncio.get_running_loop().time() - started
        if how == "stop":
            # Well before the expiry: the removal came from b's own record.
            assert elapsed < EXPIRY_MS / 1000, elapsed
        else:
            assert f"node {b_id} silent for over 3 s: removed" in a.process.output()
        health = await client.request("GET", f"{a.ingress}/restate/health")
        assert health.status == 200
        for node in (a, b):
            assert node.process.output().count("refused an idempotent producer") == 1
            assert "InitProducerIdRequest" not in node.process.output()
    finally:
        await client.close()
