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
from tests.e2e.capabilities import (
    APP,
    deployment_flag,
    entry_completed,
    start_cluster,
    upgrade_in_place,
)
from tests.e2e.conftest import Cluster, stop_cluster
from tests.e2e.harness import Client, Endpoint


@pytest.fixture
def multiplexed(tmp_path: Path) -> Iterator[Cluster]:
    started = start_cluster(tmp_path, [])
    yield started
    stop_cluster(started)


@pytest.fixture
def single_calls(tmp_path: Path) -> Iterator[Cluster]:
    started = start_cluster(tmp_path, ["--no-multiplex"])
    yield started
    stop_cluster(started)


async def test_the_endpoint_killed_under_load_loses_and_repeats_nothing(
    multiplexed: Cluster, tmp_path: Path
) -> None:
    client = Client(multiplexed.node)
    try:
        await client.register(multiplexed.endpoint)
        assert await deployment_flag(client, "multiplex") is True
        # One invocation surely on the stream when it dies: two steps done, the third gated.
        path = tmp_path / "lines.txt"
        invocation_id = await client.send("/Steps/three_steps", str(path))
        await client.wait_for(lambda: entry_completed(client, invocation_id, 2))
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
        upgraded = await upgrade_in_place(
            single_calls, client, tmp_path, flag="multiplex", prefix="nm"
        )

        # And back: the same address without multiplexing again (said by the environment this
        # time, CAIRN_MULTIPLEX=0, where the fixture passed --no-multiplex), registered again.
        upgraded.kill()
        downgraded = Endpoint(APP, tmp_path, port=upgraded.port)
        downgraded.process.env = {**downgraded.process.env, "CAIRN_MULTIPLEX": "0"}
        single_calls.endpoint = downgraded
        downgraded.start()
        registered = await client.admin("POST", "/deployments", {"uri": downgraded.uri})
        assert registered.status == 201, registered.body
        assert await deployment_flag(client, "multiplex") is False
        assert (await client.call("/Counter/nm-0/add", 1)).json() == 12
    finally:
        await client.close()
