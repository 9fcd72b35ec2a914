"""A protocol capability an endpoint declares in its manifest (``message_batches``,
``multiplex``) end to end: a node and an endpoint started with or without it, and the same
endpoint upgraded in place to one that has it, with an invocation in flight across the upgrade
(tests/e2e/test_batches.py, test_multiplex.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.apps.effects import open_gate
from tests.e2e.conftest import Cluster
from tests.e2e.harness import Client, Endpoint, Node

APP = "tests.e2e.apps.core:app"


def start_cluster(tmp_path: Path, args: list[str]) -> Cluster:
    """A node on the local log and the core app's endpoint, started with ``args``."""
    node = Node("local", tmp_path / "data")
    endpoint = Endpoint(APP, tmp_path, args=args)
    started = Cluster(node, endpoint)
    try:
        endpoint.start()
        node.start()
    except BaseException:
        print(started.logs())
        node.kill()
        endpoint.kill()
        raise
    return started


async def deployment_flag(client: Client, name: str) -> bool:
    """The one deployment's capability ``name``, as GET /deployments shows it."""
    [deployment] = (await client.admin("GET", "/deployments")).json()["deployments"]
    return bool(deployment[name])


async def entry_completed(client: Client, invocation_id: str, index: int) -> bool:
    """Whether journal entry ``index`` of the invocation is there and completed."""
    journal = (await client.invocation(invocation_id))["journal"]
    return len(journal) > index and journal[index]["completed"]


async def upgrade_in_place(
    cluster: Cluster, client: Client, tmp_path: Path, *, flag: str, prefix: str
) -> Endpoint:
    """Serve calls through ``cluster``'s endpoint, which lacks ``flag``; with a step-by-step
    invocation in flight (two steps done), restart the endpoint at the same address with its
    defaults (``flag`` on) and register it again (201: no ``force``, the handlers are the same);
    the invocation ends with no step run twice. Returns the upgraded endpoint (now the
    cluster's); counter ``{prefix}-0`` holds 11."""
    await client.register(cluster.endpoint)
    assert await deployment_flag(client, flag) is False
    greeting = await client.call("/Greeter/greet", "Ada")
    assert (greeting.status, greeting.json()) == (200, "Hello, Ada!")
    adds = [client.call(f"/Counter/{prefix}-{i % 4}/add", 1) for i in range(40)]
    assert all(r.status == 200 for r in await asyncio.gather(*adds))
    for i in range(4):
        assert (await client.call(f"/Counter/{prefix}-{i}/get")).json() == 10

    path = tmp_path / "lines.txt"
    invocation_id = await client.send("/Steps/three_steps", str(path))
    await client.wait_for(lambda: entry_completed(client, invocation_id, 2))
    cluster.endpoint.kill()
    upgraded = Endpoint(APP, tmp_path, port=cluster.endpoint.port)
    cluster.endpoint = upgraded
    upgraded.start()
    registered = await client.admin("POST", "/deployments", {"uri": upgraded.uri})
    assert registered.status == 201, registered.body
    assert await deployment_flag(client, flag) is True
    open_gate(path)
    response = await client.attach(invocation_id)
    assert (response.status, response.json()) == (200, ["one", "two", "three"])
    assert path.read_text().splitlines() == ["one", "two", "three"]  # nothing ran twice
    assert (await client.call(f"/Counter/{prefix}-0/add", 1)).json() == 11
    return upgraded
