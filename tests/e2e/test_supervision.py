"""DESIGN §11, supervised tasks and truthful health, end to end on both logs.

A fault point (``CAIRN_FAULT_AT``, test-only) makes one background task of a real node raise;
health must answer 503 naming it while it restarts, 200 once it recovered, and the work caught
in the fault must still complete exactly once. (The bounded graceful stop: ``test_shutdown``.)
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from partition_processor.ids import object_partition_key, partition_of
from tests.e2e.conftest import Cluster, _register, start_cluster, stop_cluster
from tests.e2e.harness import Client, Endpoint, Node

APP = "tests.e2e.apps.comms:app"
PARTITIONS = 4


class HealthWatch:
    """Polls both health endpoints in the background and keeps every answer."""

    def __init__(self, node: Node) -> None:
        self._urls = {"ingress": f"{node.ingress}/restate/health", "admin": f"{node.admin}/health"}
        self.seen: list[tuple[str, int, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HealthWatch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                for api, url in self._urls.items():
                    try:
                        async with http.get(url) as response:
                            self.seen.append((api, response.status, await response.json()))
                    except (aiohttp.ClientError, TimeoutError, ValueError):
                        pass  # not listening yet
                await asyncio.sleep(0.02)

    def unhealthy(self, api: str, fragment: str) -> list[Any]:
        """The 503 bodies of ``api`` whose message contains ``fragment``."""
        return [
            body
            for seen_api, status, body in self.seen
            if seen_api == api and status == 503 and fragment in body["message"]
        ]

    def describe(self) -> str:
        return "\n".join(f"{a} {s} {b}" for a, s, b in self.seen[-40:])


async def _healthy(client: Client) -> bool:
    for url in (f"{client.node.ingress}/restate/health", f"{client.node.admin}/health"):
        try:
            if (await client.request("GET", url)).status != 200:
                return False
        except aiohttp.ClientError:
            return False  # not listening yet
    return True


async def _task_metric(client: Client, metric: str, task: str) -> float:
    text = (await client.admin("GET", "/metrics")).body.decode()
    match = re.search(rf'^{metric}_total{{task="{re.escape(task)}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _assert_reported(watch: HealthWatch, fragment: str, partition_task: bool = True) -> None:
    """Both APIs answered 503 naming the failing task (and its partition)."""
    for api in ("ingress", "admin"):
        bodies = watch.unhealthy(api, fragment)
        assert bodies, f"{api} never reported {fragment!r}:\n{watch.describe()}"
        body = bodies[0]
        assert body["code"] == 503
        assert any(fragment in task["reason"] for task in body["tasks"]), body
        if partition_task:
            assert body["partitions"], body
            assert f"partition {body['partitions'][0]} is not being served" in body["message"]


@pytest.fixture
def faulty(
    request: pytest.FixtureRequest, log_kind: str, bootstrap: str | None, tmp_path: Path
) -> Iterator[Cluster]:
    """A node started with ``CAIRN_FAULT_AT`` = the test's ``fault`` parameter."""
    fault: str = request.param
    started = start_cluster(APP, log_kind, tmp_path, bootstrap, env={"CAIRN_FAULT_AT": fault})
    yield started
    stop_cluster(started)


@pytest.mark.parametrize("faulty", ["outbox.ship:4"], indirect=True)
async def test_a_failing_outbox_shipper_is_reported_restarted_and_delivers_once(
    faulty: Cluster, tmp_path: Path
) -> None:
    client = Client(faulty.node)
    try:
        path = tmp_path / "callee.txt"
        async with HealthWatch(faulty.node) as watch:
            # A call: its Invoke to the callee (and the result back) go through an outbox.
            response = await client.call("/Effects/call_once", str(path))
            assert response.status == 200, response.body
            assert response.json() == "CALLEE"
            await client.wait_for(lambda: _healthy(client))
        _assert_reported(watch, "outbox restarting after InjectedFault: injected fault at outbox")
        assert path.read_text().splitlines() == ["callee"]  # once, though shipped after 4 faults
        assert await _task_metric(client, "cairn_task_failures", "outbox") == 4
        assert await _task_metric(client, "cairn_task_restarts", "outbox") == 4
    finally:
        await client.close()


@pytest.mark.parametrize("faulty", ["timers.fire:4"], indirect=True)
async def test_a_failing_timer_service_is_reported_restarted_and_fires_once(
    faulty: Cluster,
) -> None:
    client = Client(faulty.node)
    user = uuid.uuid4().hex[:10]
    try:
        async with HealthWatch(faulty.node) as watch:
            # A durable sleep and a delayed send: both wait for a timer of the faulty service.
            reminder = {"userId": user, "message": "later", "delay_ms": 300}
            response, reminded = await asyncio.gather(
                client.call("/Timers/sleep_for", 300), client.call("/Signup/remind", reminder)
            )
            assert response.status == 200, response.body
            assert reminded.status == 200, reminded.body
            started, woke = response.json()
            assert woke - started >= 0.3
            await client.wait_for(lambda: _healthy(client))
        _assert_reported(watch, "timers restarting after InjectedFault: injected fault at timers")

        async def recorded() -> list[Any]:
            entries: list[Any] = (await client.call(f"/Recorder/{user}/entries")).json()
            return entries

        await client.wait_for(recorded)
        await asyncio.sleep(1.0)  # a timer fired twice would deliver a second reminder
        assert [e["entry"] for e in await recorded()] == [{"reminder": "later"}]
        assert await _task_metric(client, "cairn_task_failures", "timers") == 4
    finally:
        await client.close()


@pytest.mark.parametrize("faulty", ["invoker.propose:3"], indirect=True)
async def test_a_crashed_attempt_is_reported_and_restarted_and_its_effects_apply_once(
    faulty: Cluster,
) -> None:
    client = Client(faulty.node)
    key = uuid.uuid4().hex[:10]
    try:
        async with HealthWatch(faulty.node) as watch:
            response = await client.call(f"/Recorder/{key}/record", "x")
            assert response.status == 200, response.body
            await client.wait_for(lambda: _healthy(client))
        _assert_reported(watch, "attempt restarting after InjectedFault: injected fault at invoker")
        response = await client.call(f"/Recorder/{key}/entries")
        assert [e["entry"] for e in response.json()] == ["x"]
        assert await _task_metric(client, "cairn_task_failures", "attempt") == 3
    finally:
        await client.close()


async def test_a_failing_metadata_follower_is_reported_restarted_and_applies_once(
    log_kind: str, bootstrap: str | None, tmp_path: Path
) -> None:
    # The metadata log starts empty: the registration is the first batch the follower applies.
    node = Node(
        log_kind,
        tmp_path / "data",
        bootstrap,
        partitions=PARTITIONS,
        env={"CAIRN_FAULT_AT": "metadata.apply:4"},
    )
    endpoint = Endpoint(APP, tmp_path)
    cluster = Cluster(node, endpoint)
    client = Client(node)
    try:
        endpoint.start()
        node.start()  # the metadata log is empty: nothing to apply, nothing fails yet
        async with HealthWatch(node) as watch:
            await asyncio.to_thread(_register, node, endpoint)  # applied after 4 failures
            await client.wait_for(lambda: _healthy(client))
        _assert_reported(
            watch,
            "metadata-follower restarting after InjectedFault: injected fault at metadata",
            partition_task=False,
        )
        services = (await client.admin("GET", "/services")).json()["services"]
        names = [s["name"] for s in services]
        assert len(names) == len(set(names)) and "Effects" in names
        response = await client.call("/Timers/sleep_for", 1)
        assert response.status == 200, response.body
        assert await _task_metric(client, "cairn_task_failures", "metadata-follower") == 4
    finally:
        await client.close()
        stop_cluster(cluster)


def _keys_on_every_partition() -> list[str]:
    """One Recorder key per partition."""
    found: dict[int, str] = {}
    while len(found) < PARTITIONS:
        key = uuid.uuid4().hex[:10]
        found.setdefault(partition_of(object_partition_key("Recorder", key), PARTITIONS), key)
    return [found[p] for p in range(PARTITIONS)]


@pytest.mark.parametrize(
    ("fault", "reported"),
    [
        ("leader.announce:3", "claim restarting after InjectedFault: injected fault at leader"),
        ("worker.apply:3", "apply restarting after InjectedFault: injected fault at worker"),
    ],
)
async def test_a_failing_claim_or_apply_loop_at_start_is_reported_and_every_partition_is_led(
    log_kind: str, bootstrap: str | None, tmp_path: Path, fault: str, reported: str
) -> None:
    """A failed ``AnnounceLeader`` append (or apply) does not leave a partition unled."""
    node = Node(
        log_kind, tmp_path / "data", bootstrap, partitions=PARTITIONS, env={"CAIRN_FAULT_AT": fault}
    )
    endpoint = Endpoint(APP, tmp_path)
    cluster = Cluster(node, endpoint)
    client = Client(node)
    try:
        endpoint.start()
        async with HealthWatch(node) as watch:
            node.process.spawn()
            await client.wait_for(lambda: _healthy(client), timeout_s=60)
        for api in ("ingress", "admin"):
            [first, *_] = watch.unhealthy(api, reported) or [None]
            assert first is not None, f"{api} never reported {reported!r}:\n{watch.describe()}"
            assert first["message"].startswith("the node is starting; partition ")
        _register(node, endpoint)
        for key in _keys_on_every_partition():  # each partition has a leader that serves it
            response = await client.call(f"/Recorder/{key}/record", "x")
            assert response.status == 200, response.body
            response = await client.call(f"/Recorder/{key}/entries")
            assert [e["entry"] for e in response.json()] == ["x"]
        task = reported.split(" ", 1)[0]
        assert await _task_metric(client, "cairn_task_failures", task) == 3
    finally:
        await client.close()
        stop_cluster(cluster)
