"""Many attempts on one stream end to end (README, How it works): the endpoint killed (kill -9)
under load, then an endpoint that does not multiplex (``--no-multiplex``, as endpoints before)
upgraded in place to one that does, with an invocation in flight across the upgrade.

Every other e2e suite runs against endpoints that multiplex (the default), so counter, greet,
steps, sleep, awakeables and workflows all go through it there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.apps.effects import open_gate
from tests.e2e.conftest import Cluster, stop_cluster
from tests.e2e.harness import Client, Endpoint, Node

APP = "tests.e2e.apps.core:app"


def _cluster(tmp_path: Path, args: list[str]) -> Cluster:
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


@pytest.fixture
def multiplexed(tmp_path: Path) -> Iterator[Cluster]:
    started = _cluster(tmp_path, [])
    yield started
    stop_cluster(started)


@pytest.fixture
def single_calls(tmp_path: Path) -> Iterator[Cluster]:
    started = _cluster(tmp_path, ["--no-multiplex"])
    yield started
    stop_cluster(started)


async def _multiplex_flag(client: Client) -> bool:
    [deployment] = (await client.admin("GET", "/deployments")).json()["deployments"]
    return bool(deployment["multiplex"])


async def _entry_completed(client: Client, invocation_id: str, index: int) -> bool:
    journal = (await client.invocation(invocation_id))["journal"]
    return len(journal) > index and journal[index]["completed"]


async def test_the_endpoint_killed_under_load_loses_and_repeats_nothing(
    multiplexed: Cluster, tmp_path: Path
) -> None:
    client = Client(multiplexed.node)
    try:
        await client.register(multiplexed.endpoint)
        assert await _multiplex_flag(client) is True
        # One invocation surely on the stream when it dies: two steps done, the third gated.
        path = tmp_path / "lines.txt"
        invocation_id = await client.send("/Steps/three_steps", str(path))
        await client.wait_for(lambda: _entry_completed(client, invocation_id, 2))
        keys, per_key = 8, 40
        calls = [
            asyncio.ensure_future(client.call(f"/Counter/mx-{i % keys}/add", 1))
            for i in range(keys * per_key)
        ]
        # Kill -9 while calls are in flight on the shared stream, then bring it back.

        async def some_answered() -> bool:
            return sum(call.done() for call in calls) >= 10

        await client.wait_for(some_answered, interval_s=0.01)
        multiplexed.endpoint.kill()
        open_gate(path)
        await asyncio.sleep(0.3)
        await multiplexed.endpoint.restart()
        responses = await asyncio.gather(*calls)
        gated = await client.attach(invocation_id)
        assert (gated.status, gated.json()) == (200, ["one", "two", "three"])
        assert path.read_text().splitlines() == ["one", "two", "three"]  # no step ran twice
        assert all(r.status == 200 for r in responses), [r.body for r in responses][:5]
        # Each add was applied exactly once and answered once: every key's answers are exactly
        # 1..per_key (an add applied twice would skip a value, one lost would leave one out).
        answers: dict[int, list[int]] = {k: [] for k in range(keys)}
        for i, response in enumerate(responses):
            answers[i % keys].append(response.json())
        for key in range(keys):
            assert sorted(answers[key]) == list(range(1, per_key + 1))
            assert (await client.call(f"/Counter/mx-{key}/get")).json() == per_key
    finally:
        await client.close()


async def test_an_endpoint_without_multiplexing_works_and_upgrades_in_place(
    single_calls: Cluster, tmp_path: Path
) -> None:
    client = Client(single_calls.node)
    try:
        await client.register(single_calls.endpoint)
        assert await _multiplex_flag(client) is False
        greeting = await client.call("/Greeter/greet", "Ada")
        assert (greeting.status, greeting.json()) == (200, "Hello, Ada!")
        adds = [client.call(f"/Counter/nm-{i % 4}/add", 1) for i in range(40)]
        assert all(r.status == 200 for r in await asyncio.gather(*adds))
        for i in range(4):
            assert (await client.call(f"/Counter/nm-{i}/get")).json() == 10

        # A step-by-step invocation in flight: two steps done, the third waits for its gate.
        path = tmp_path / "lines.txt"
        invocation_id = await client.send("/Steps/three_steps", str(path))
        await client.wait_for(lambda: _entry_completed(client, invocation_id, 2))
        # Upgrade in place: the same address now serves an endpoint that multiplexes.
        single_calls.endpoint.kill()
        upgraded = Endpoint(APP, tmp_path, port=single_calls.endpoint.port)
        single_calls.endpoint = upgraded
        upgraded.start()
        registered = await client.admin("POST", "/deployments", {"uri": upgraded.uri})
        assert registered.status == 201, registered.body  # no force: the handlers are the same
        assert await _multiplex_flag(client) is True
        open_gate(path)
        response = await client.attach(invocation_id)
        assert (response.status, response.json()) == (200, ["one", "two", "three"])
        assert path.read_text().splitlines() == ["one", "two", "three"]  # nothing ran twice
        assert (await client.call("/Counter/nm-0/add", 1)).json() == 11

        # And back: the same address without multiplexing again, registered again (201).
        upgraded.kill()
        downgraded = Endpoint(APP, tmp_path, port=upgraded.port, args=["--no-multiplex"])
        single_calls.endpoint = downgraded
        downgraded.start()
        registered = await client.admin("POST", "/deployments", {"uri": downgraded.uri})
        assert registered.status == 201, registered.body
        assert await _multiplex_flag(client) is False
        assert (await client.call("/Counter/nm-0/add", 1)).json() == 12
    finally:
        await client.close()
