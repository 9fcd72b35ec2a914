"""Batched stream messages end to end (README, Endpoints): a node against an endpoint that does
not batch (``--no-message-batches``, as endpoints before batches), then the same endpoint
upgraded in place to one that does, with an invocation in flight across the upgrade.

Every other e2e suite runs with batches on both sides (the default), kill -9 tests included."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.apps.effects import open_gate
from tests.e2e.conftest import Cluster, stop_cluster
from tests.e2e.harness import Client, Endpoint, Node

APP = "tests.e2e.apps.core:app"


@pytest.fixture
def unbatched(tmp_path: Path) -> Iterator[Cluster]:
    node = Node("local", tmp_path / "data")
    endpoint = Endpoint(APP, tmp_path, args=["--no-message-batches"])
    started = Cluster(node, endpoint)
    try:
        endpoint.start()
        node.start()
    except BaseException:
        print(started.logs())
        node.kill()
        endpoint.kill()
        raise
    yield started
    stop_cluster(started)


async def _batches_flag(client: Client) -> bool:
    [deployment] = (await client.admin("GET", "/deployments")).json()["deployments"]
    return bool(deployment["message_batches"])


async def _entry_completed(client: Client, invocation_id: str, index: int) -> bool:
    journal = (await client.invocation(invocation_id))["journal"]
    return len(journal) > index and journal[index]["completed"]


async def test_an_endpoint_without_batches_works_and_upgrades_in_place(
    unbatched: Cluster, tmp_path: Path
) -> None:
    client = Client(unbatched.node)
    try:
        await client.register(unbatched.endpoint)
        assert await _batches_flag(client) is False
        greeting = await client.call("/Greeter/greet", "Ada")
        assert (greeting.status, greeting.json()) == (200, "Hello, Ada!")
        adds = [client.call(f"/Counter/nb-{i % 4}/add", 1) for i in range(40)]
        assert all(r.status == 200 for r in await asyncio.gather(*adds))
        for i in range(4):
            assert (await client.call(f"/Counter/nb-{i}/get")).json() == 10

        # A step-by-step invocation in flight: two steps done, the third waits for its gate.
        path = tmp_path / "lines.txt"
        invocation_id = await client.send("/Steps/three_steps", str(path))
        await client.wait_for(lambda: _entry_completed(client, invocation_id, 2))
        # Upgrade in place: the same address now serves an endpoint that batches.
        unbatched.endpoint.kill()
        upgraded = Endpoint(APP, tmp_path, port=unbatched.endpoint.port)
        unbatched.endpoint = upgraded
        upgraded.start()
        registered = await client.admin("POST", "/deployments", {"uri": upgraded.uri})
        assert registered.status == 201, registered.body  # no force: the handlers are the same
        assert await _batches_flag(client) is True
        open_gate(path)
        response = await client.attach(invocation_id)
        assert (response.status, response.json()) == (200, ["one", "two", "three"])
        assert path.read_text().splitlines() == ["one", "two", "three"]  # nothing ran twice
        assert (await client.call("/Counter/nb-0/add", 1)).json() == 11
    finally:
        await client.close()
