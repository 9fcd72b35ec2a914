"""DESIGN §11, supervised tasks and a bounded graceful stop, end to end on both logs.

A fault point (``CAIRN_FAULT_AT``, test-only) makes one background task of a real node raise;
health must answer 503 naming it while it restarts, 200 once it recovered, and the work caught
in the fault must still complete exactly once. Then: SIGTERM with 100 callers waiting.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from partition_processor.ids import object_partition_key, partition_of
from tests.e2e.conftest import Cluster, _register, start_cluster, stop_cluster
from tests.e2e.harness import Client, Endpoint, Node
from tests.support.broker import TansuBroker, unique_topic

APP = "tests.e2e.apps.comms:app"
PARTITIONS = 4
SHUTDOWN_TIMEOUT_S = 15


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


# ---------------------------------------------------------------- graceful stop


async def test_a_node_whose_claim_keeps_failing_is_unhealthy_and_stops_on_sigterm(
    log_kind: str, bootstrap: str | None, tmp_path: Path
) -> None:
    """It never becomes ready (its health says why), and SIGTERM still stops it in time."""
    node = Node(
        log_kind,
        tmp_path / "data",
        bootstrap,
        partitions=PARTITIONS,
        env={"CAIRN_FAULT_AT": "leader.announce:100000"},
    )
    client = Client(node)
    try:
        async with HealthWatch(node) as watch:
            node.process.spawn()
            reason = "claim restarting after InjectedFault"
            await client.wait_for(lambda: asyncio.sleep(0, watch.unhealthy("admin", reason)))
        assert not await _healthy(client)
        process = node.process.process
        assert process is not None
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT_S + 15)
        assert code == 0, node.process.output()[-5000:]
        assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT_S
    finally:
        await client.close()
        print(node.process.output()[-10000:])
        node.kill()


async def _awakeables_published(client: Client, key: str, count: int) -> list[str]:
    async def published() -> list[str] | None:
        response = await client.call(f"/Recorder/{key}/entries")
        entries = response.json() if response.status == 200 else []
        if not entries:
            return None
        ids = entries[0]["entry"]
        return [ids] if isinstance(ids, str) else list(ids)

    ids: list[str] = await client.wait_for(published, timeout_s=60)
    assert len(ids) == count
    return ids


async def test_sigterm_answers_100_waiting_callers_with_their_ids_and_exits_in_time(
    cluster: Cluster, client: Client
) -> None:
    prefix = uuid.uuid4().hex[:8]
    keys = [f"{prefix}-{i}" for i in range(100)]
    # Even: one awakeable, suspended (no stream held); odd: two, with the stream still open.
    handlers = ["wait_for_one" if i % 2 == 0 else "wait_for_two" for i in range(100)]
    calls = [
        asyncio.create_task(client.call(f"/Awakeables/{handler}", key))
        for handler, key in zip(handlers, keys, strict=True)
    ]
    awakeables = await asyncio.gather(
        *(
            _awakeables_published(client, key, 1 if h == "wait_for_one" else 2)
            for h, key in zip(handlers, keys, strict=True)
        )
    )
    assert not any(call.done() for call in calls)  # all 100 are waiting for their result
    # And one more caller waiting on one of them by attaching (it knows the id already).
    listed = (await client.admin("GET", "/invocations")).json()["invocations"]
    attached_id = next(i["id"] for i in listed if i["target"] == "Awakeables/wait_for_two")
    attached = asyncio.create_task(client.attach(attached_id))
    await asyncio.sleep(2.0)  # a generous margin for the attach to reach the node and wait

    process = cluster.node.process.process
    assert process is not None
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    answered = asyncio.gather(*calls)
    code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT_S + 15)
    elapsed = time.monotonic() - signalled
    responses = await answered
    assert code == 0, cluster.node.process.output()[-5000:]
    assert elapsed < SHUTDOWN_TIMEOUT_S, elapsed

    invocation_ids = []
    for response in responses:
        assert response.status == 503, response.body
        body = response.json()
        assert body["code"] == 503 and "shutting down" in body["message"]
        assert response.headers["x-restate-id"] == body["invocationId"]
        assert "Retry-After" in response.headers
        invocation_ids.append(body["invocationId"])
    assert len(set(invocation_ids)) == 100
    response = await attached
    assert response.status == 503, response.body
    assert response.json()["invocationId"] == attached_id == response.headers["x-restate-id"]

    await asyncio.to_thread(cluster.node.start)
    expected: list[Any] = []
    for i, ids in enumerate(awakeables):
        values = [f"{i}-{n}" for n in range(len(ids))]
        for awakeable_id, value in zip(ids, values, strict=True):
            resolved = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", value)
            assert resolved.status == 202, resolved.body
        expected.append(f"got {values[0]}" if len(ids) == 1 else values)
    results = await asyncio.gather(*(client.attach(i) for i in invocation_ids))
    for result, want in zip(results, expected, strict=True):
        assert result.status == 200, result.body
        assert result.json() == want


async def test_sigterm_is_bounded_even_when_the_broker_is_gone(tmp_path: Path) -> None:
    """Nothing in the stop may wait on a dead broker past ``--shutdown-timeout``; a waiting
    caller is answered first, with its invocation id."""
    broker = TansuBroker.start(tmp_path)
    node = Node(
        "kafka",
        tmp_path / "data",
        broker.bootstrap,
        partitions=PARTITIONS,
        extra=["--shutdown-timeout", "3"],
    )
    endpoint = Endpoint(APP, tmp_path)
    cluster = Cluster(node, endpoint)
    client = Client(node)
    try:
        endpoint.start()
        node.start()
        _register(node, endpoint)
        key = uuid.uuid4().hex[:10]
        waiting = asyncio.create_task(client.call("/Awakeables/wait_for_two", key))
        await _awakeables_published(client, key, 2)
        broker.stop()
        process = node.process.process
        assert process is not None
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        response = await asyncio.wait_for(waiting, 30)
        code = await asyncio.to_thread(process.wait, 30)
        elapsed = time.monotonic() - signalled
        assert response.status == 503 and response.json()["invocationId"], response.body
        # 3 s, and a generous margin for the interpreter's own exit on a loaded machine.
        assert elapsed < 3 + 5, elapsed
        output = node.process.output()
        assert code == 0 or (code == 1 and "did not stop within 3 s" in output), output[-3000:]
    finally:
        await client.close()
        stop_cluster(cluster)
        broker.stop()


async def test_sigterm_of_a_cluster_node_hands_its_waiting_callers_to_the_other_node(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """The stopping node answers its callers with their ids and leaves the group at once; the
    other node leads every partition and gives each caller its result by attach."""
    prefix = unique_topic("stop")
    flags = ["--cluster", "--cluster-session-timeout-ms", "3000"]
    a, b = (
        Node(
            "kafka",
            tmp_path / name,
            kafka_bootstrap,
            PARTITIONS,
            extra=[*flags, "--node-name", name],
            topic_prefix=prefix,
        )
        for name in ("a", "b")
    )
    endpoint = Endpoint(APP, tmp_path)
    via_a, via_b = Client(a), Client(b)
    try:
        endpoint.start()
        a.start()
        b.start()
        await via_a.register(endpoint)

        async def leaders() -> list[int]:
            led = [
                p
                for c in (via_a, via_b)
                for p in (await c.admin("GET", "/cluster")).json()["leading"]
            ]
            return sorted(led)

        await via_a.wait_for(lambda: _equals(leaders(), list(range(PARTITIONS))))
        keys = [uuid.uuid4().hex[:10] for _ in range(20)]
        calls = [asyncio.create_task(via_a.call("/Awakeables/wait_for_one", k)) for k in keys]
        awakeables = await asyncio.gather(*(_awakeables_published(via_a, k, 1) for k in keys))
        assert not any(call.done() for call in calls)

        process = a.process.process
        assert process is not None
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        answered = asyncio.gather(*calls)
        assert await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT_S + 15) == 0
        assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT_S
        ids = []
        for response in await answered:
            assert response.status == 503, response.body
            ids.append(response.json()["invocationId"])

        async def b_leads_all() -> bool:
            leading = (await via_b.admin("GET", "/cluster")).json()["leading"]
            return sorted(leading) == list(range(PARTITIONS))

        await via_b.wait_for(b_leads_all)
        for i, [awakeable_id] in enumerate(awakeables):
            resolved = await via_b.call(f"/restate/awakeables/{awakeable_id}/resolve", f"v{i}")
            assert resolved.status == 202, resolved.body
        results = await asyncio.gather(*(via_b.attach(i) for i in ids))
        assert [r.json() for r in results] == [f"got v{i}" for i in range(len(keys))]
    finally:
        await via_a.close()
        await via_b.close()
        for process_ in (a, b, endpoint):
            print(process_.process.output()[-10000:])
            process_.stop()


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
