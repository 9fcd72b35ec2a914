"""A cluster of two nodes on one Kafka: any node serves any partition, a dead node's partitions
move to the other with its invocations, and a node that comes back takes some again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from partition_processor.ids import (
    invocation_id_for,
    object_partition_key,
    parse_partition_key,
    partition_of,
)
from tests.e2e.apps.effects import at_gate, open_gate
from tests.e2e.harness import Client, Endpoint, Node
from tests.support.broker import unique_topic

APP = "tests.e2e.apps.core:app"
PARTITIONS = 4
SESSION_TIMEOUT_MS = 3000


@dataclass
class TwoNodes:
    a: Node
    b: Node
    endpoint: Endpoint

    def logs(self) -> str:
        return "\n".join(
            f"----- {name} (tail) -----\n{process.output()[-15000:]}"
            for name, process in (
                ("node a", self.a.process),
                ("node b", self.b.process),
                ("endpoint", self.endpoint.process),
            )
        )


def _node(
    name: str, directory: Path, bootstrap: str, prefix: str, replication: int | None = None
) -> Node:
    flags = [
        "--cluster",
        "--cluster-session-timeout-ms",
        str(SESSION_TIMEOUT_MS),
        "--node-name",
        name,
    ]
    if replication is not None:
        flags += ["--replication", str(replication)]
    return Node("kafka", directory / name, bootstrap, PARTITIONS, extra=flags, topic_prefix=prefix)


@contextmanager
def two_nodes(
    app: str, directory: Path, bootstrap: str, tag: str, replication: int | None = None
) -> Iterator[TwoNodes]:
    """Nodes a and b of one cluster on fresh topics, and an endpoint serving ``app``; their logs
    are printed at the end (pytest shows them when the test failed). ``replication`` 1: each
    node applies only the partitions it leads."""
    prefix = unique_topic(tag)
    started = TwoNodes(
        _node("a", directory, bootstrap, prefix, replication),
        _node("b", directory, bootstrap, prefix, replication),
        Endpoint(app, directory),
    )
    try:
        # Inside the try: when b cannot start, a and the endpoint are stopped too.
        started.endpoint.start()
        started.a.start()
        started.b.start()
        yield started
    finally:
        print(started.logs())
        for process in (started.a, started.b, started.endpoint):
            process.stop()


@pytest.fixture
def nodes(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str
) -> Iterator[TwoNodes]:
    """Two nodes; a test parametrizes it indirectly with a replication factor to set one."""
    replication: int | None = getattr(request, "param", None)
    with two_nodes(APP, tmp_path, kafka_bootstrap, "cluster", replication) as started:
        yield started


@pytest.fixture
async def clients(nodes: TwoNodes) -> AsyncIterator[tuple[Client, Client]]:
    a, b = Client(nodes.a), Client(nodes.b)
    await a.register(nodes.endpoint)

    async def b_knows_the_services() -> bool:
        services = (await b.admin("GET", "/services")).json()["services"]
        return any(s["name"] == "Counter" for s in services)

    await b.wait_for(b_knows_the_services)  # the deployment reached b through the metadata log
    await a.wait_for(lambda: _leads_all_between(a, b))
    yield a, b
    await a.close()
    await b.close()


async def _leading(client: Client) -> list[int]:
    response = await client.admin("GET", "/cluster")
    assert response.status == 200, response.body
    leading: list[int] = response.json()["leading"]
    return leading


async def _leads_all_between(*clients: Client) -> bool:
    """Every partition led by exactly one of ``clients``' nodes."""
    led = [p for client in clients for p in await _leading(client)]
    return sorted(led) == list(range(PARTITIONS))


async def test_any_node_serves_any_partition(
    nodes: TwoNodes, clients: tuple[Client, Client]
) -> None:
    a, b = clients
    assert await _leading(a) and await _leading(b)  # the partitions are split between them
    keys = _keys_on_every_partition("Counter")

    async def add(client: Client, key: str) -> int:
        response = await client.call(f"/Counter/{key}/add", 1)
        assert response.status == 200, response.body
        value: int = response.json()
        return value

    # Each node's ingress takes requests for partitions the other leads: the leader delivers the
    # result to the node holding the request.
    await asyncio.gather(*(add(client, key) for key in keys for client in (a, b, a)))
    for key in keys:
        for client in (a, b):  # every node follows every partition: state reads anywhere
            state = await client.wait_for(lambda c=client, k=key: _count(c, k, 3))
            assert state == 3


async def test_admin_writes_work_from_any_node(
    nodes: TwoNodes, clients: tuple[Client, Client]
) -> None:
    """An awakeable resolved and an invocation killed through the node that does not lead."""
    a, b = clients
    led_by_a = set(await _leading(a))
    keys = [k for k in _keys_on_every_partition("Counter") if _partition("Counter", k) in led_by_a]
    resolved, killed = keys[0], keys[1]
    holders = {key: await b.send(f"/Counter/{key}/hold") for key in (resolved, killed)}

    async def pending(key: str) -> Any:
        response = await b.admin("GET", f"/services/Counter/state/{key}")
        return response.json()["state"].get("pending")

    awakeable_id = await b.wait_for(lambda: pending(resolved))
    await b.wait_for(lambda: pending(killed))
    response = await b.call(f"/restate/awakeables/{awakeable_id}/resolve", "let go")
    assert response.status == 202, response.body
    assert (await b.attach(holders[resolved])).json() == "let go"
    response = await b.admin("PATCH", f"/invocations/{holders[killed]}/kill")
    assert response.status == 200, response.body
    killed_result = await b.attach(holders[killed])
    assert (killed_result.status, killed_result.json()["message"]) == (409, "killed")


@pytest.mark.parametrize("nodes", [1], indirect=True)
async def test_state_patched_from_a_node_that_does_not_apply_the_partition(
    nodes: TwoNodes, clients: tuple[Client, Client]
) -> None:
    """Replication 1: b neither leads nor follows the key's partition; it reads the state from
    a (with its version) and appends the patch, whose outcome a's leader delivers back to b."""
    a, b = clients
    led_by_a = set(await _leading(a))
    key = next(
        k for k in _keys_on_every_partition("Counter") if _partition("Counter", k) in led_by_a
    )
    placement = (await b.admin("GET", "/cluster")).json()["partitions"]
    assert placement[_partition("Counter", key)]["standbys"] == []
    assert (await a.call(f"/Counter/{key}/add", 2)).json() == 2
    read = await b.admin("GET", f"/services/Counter/state/{key}")
    assert read.status == 200, read.body
    assert read.json()["state"] == {"count": 2}
    body = {"object_key": key, "version": read.json()["version"], "new_state_json": {"count": 9}}
    response = await b.admin("POST", "/services/Counter/state", body)
    assert response.status == 200, response.body
    assert (await a.call(f"/Counter/{key}/add", 1)).json() == 10
    stale = await b.admin("POST", "/services/Counter/state", body)
    assert stale.status == 409, stale.body


def _partition(service: str, key: str) -> int:
    return partition_of(object_partition_key(service, key), PARTITIONS)


async def _count(client: Client, key: str, want: int) -> Any:
    response = await client.admin("GET", f"/services/Counter/state/{key}")
    count = response.json()["state"].get("count")
    return count if count == want else None


def _keys_on_every_partition(service: str) -> list[str]:
    """Object keys of ``service``, two on each partition."""
    keys: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    while any(len(found) < 2 for found in keys.values()):
        key = uuid.uuid4().hex[:8]
        partition = _partition(service, key)
        if len(keys[partition]) < 2:
            keys[partition].append(key)
    return [key for found in keys.values() for key in found]


def _key_on(partitions: list[int], service: str, handler: str) -> str:
    """An idempotency key whose invocation of ``service/handler`` lands on one of
    ``partitions``."""
    while True:
        key = uuid.uuid4().hex
        invocation_id = invocation_id_for(service, handler, None, key, entropy=bytes(16))
        if partition_of(parse_partition_key(invocation_id), PARTITIONS) in partitions:
            return key


async def test_a_dead_nodes_partitions_move_with_their_invocations(
    nodes: TwoNodes, clients: tuple[Client, Client], tmp_path: Path
) -> None:
    a, b = clients
    sent = [tmp_path / f"sent-{i}.txt" for i in range(6)]
    called = [tmp_path / f"called-{i}.txt" for i in range(6)]
    ids = [await a.send("/Steps/three_steps", str(path)) for path in sent]
    # Calls held open by b's ingress that run on partitions a leads (an idempotency key places
    # an invocation on a partition of its own).
    led_by_a = await _leading(a)
    calls = [
        asyncio.create_task(
            b.call(
                "/Steps/three_steps",
                str(path),
                headers={"idempotency-key": _key_on(led_by_a, "Steps", "three_steps")},
            )
        )
        for path in called
    ]

    async def all_waiting_at_the_gate() -> bool:  # steps one and two are in the log
        return all(at_gate(p) for p in sent + called)

    await b.wait_for(all_waiting_at_the_gate)
    for path in sent + called:
        assert path.read_text().splitlines() == ["one", "two"]
    nodes.a.kill()  # kill -9: its partitions move to b after the session timeout
    for path in sent + called:
        open_gate(path)
    await b.wait_for(lambda: _leads_all_between(b), timeout_s=30)
    for invocation_id in ids:
        response = await b.attach(invocation_id)
        assert response.status == 200, response.body
        assert response.json() == ["one", "two", "three"]
    for response in await asyncio.gather(*calls):
        assert response.status == 200, response.body
        assert response.json() == ["one", "two", "three"]
    for path in sent + called:
        assert path.read_text().splitlines() == ["one", "two", "three"]  # no step twice


async def test_a_node_that_comes_back_takes_partitions_again(
    nodes: TwoNodes, clients: tuple[Client, Client]
) -> None:
    a, b = clients
    nodes.a.kill()
    await b.wait_for(lambda: _leads_all_between(b), timeout_s=30)
    await nodes.a.restart()  # same data dir: it catches up and rejoins the group
    await a.wait_for(lambda: _leading(a), timeout_s=30)
    await a.wait_for(lambda: _leads_all_between(a, b), timeout_s=30)
    key = uuid.uuid4().hex
    for client in (a, b, a, b):
        assert (await client.call(f"/Counter/{key}/add", 2)).status == 200
    assert await a.wait_for(lambda: _count(a, key, 8)) == 8
