"""Issue 9 items 5 and the rolling restart: a node rides out a broker outage and a cluster a
rolling restart, under load, with idempotent clients that retry (503, connection errors) with the
same idempotency key. Nothing accepted is lost and every count is exact.

The broker of the outage test is the test's own Tansu (SIGSTOP/SIGCONT by its PID), never the
session's shared one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import Endpoint, Node
from tests.support.broker import TansuBroker, unique_topic

APP = "tests.e2e.apps.core:app"
PARTITIONS = 4
SESSION_TIMEOUT_MS = 3000
# The 30 s; CAIRN_TEST_OUTAGE_S=60 measures a longer outage (not in the suite).
OUTAGE_S = float(os.environ.get("CAIRN_TEST_OUTAGE_S", "30"))
# A client gives up on one try after this long and retries with the same idempotency key.
TRY_TIMEOUT_S = 10.0
# Everything must have completed this long after the broker came back.
RECOVERY_BOUND_S = 90.0


@dataclass
class Load:
    """Idempotent ``Counter.add(1)`` calls from a few workers, each retried until it succeeds."""

    ingresses: list[str]
    keys: list[str]
    done: dict[str, int] = field(default_factory=dict)  # key -> successful distinct requests
    succeeded_at: list[float] = field(default_factory=list)  # monotonic time of each success
    retries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # what failed tries answered
    bad: list[str] = field(default_factory=list)  # answers that are neither success nor retryable
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, workers: int) -> None:
        timeout = aiohttp.ClientTimeout(total=TRY_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(*(self._worker(http, n) for n in range(workers)))

    def stop(self) -> None:
        self._stop.set()

    async def _worker(self, http: aiohttp.ClientSession, n: int) -> None:
        key = self.keys[n % len(self.keys)]
        while not self._stop.is_set():
            await self._one(http, n, key, str(uuid.uuid4()))

    async def _one(self, http: aiohttp.ClientSession, n: int, key: str, idem: str) -> None:
        """One logical request: retried (same key, any node) until a 200."""
        attempt = 0
        while True:
            ingress = self.ingresses[(n + attempt) % len(self.ingresses)]
            attempt += 1
            try:
                async with http.post(
                    f"{ingress}/Counter/{key}/add",
                    data=b"1",
                    headers={"content-type": "application/json", "idempotency-key": idem},
                ) as response:
                    body = await response.read()
                    if response.status == 200:
                        self.done[key] = self.done.get(key, 0) + 1
                        self.succeeded_at.append(time.monotonic())
                        return
                    what = str(response.status)
                    if response.status != 503:
                        self.bad.append(f"{response.status} {body[:300]!r}")
                    elif "retry-after" not in response.headers or not body.startswith(b"{"):
                        self.bad.append(f"503 without Retry-After or JSON body: {body[:300]!r}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                what = type(exc).__name__
            self.statuses[what] = self.statuses.get(what, 0) + 1
            self.retries += 1
            await asyncio.sleep(0.2)


class HealthLog:
    """Polls ``/health`` (admin) of a node in the background: (monotonic time, status, body)."""

    def __init__(self, admin: str) -> None:
        self._url = f"{admin}/health"
        self.seen: list[tuple[float, int, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            while True:
                try:
                    async with http.get(self._url) as response:
                        body = await response.json()
                        self.seen.append((time.monotonic(), response.status, body))
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    self.seen.append((time.monotonic(), 0, repr(exc)))
                await asyncio.sleep(0.25)

    def between(self, start: float, end: float) -> list[tuple[float, int, Any]]:
        return [s for s in self.seen if start <= s[0] <= end]


async def _get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(url) as response:
            return response.status, await response.json(content_type=None)


async def _send_json(method: str, url: str, body: Any = None) -> tuple[int, str | None, Any]:
    """Status, Retry-After and JSON body of an admin request."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TRY_TIMEOUT_S)) as http:
        async with http.request(method, url, json=body) as response:
            answer = await response.json(content_type=None)
            return response.status, response.headers.get("Retry-After"), answer


async def _counts(ingress: str, keys: list[str]) -> dict[str, int]:
    result = {}
    for key in keys:
        status, value = await _get(f"{ingress}/Counter/{key}/get")
        assert status == 200, value
        result[key] = value
    return result


async def _wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last is True:
                return
        except (aiohttp.ClientError, TimeoutError, AssertionError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout_s}s (last: {last!r})")


async def _healthy(node: Node) -> bool:
    status, _ = await _get(f"{node.admin}/health")
    return status == 200


async def _leading(node: Node) -> list[int]:
    status, body = await _get(f"{node.admin}/cluster")
    assert status == 200, body
    leading: list[int] = body["leading"]
    return leading


async def _leads_all(nodes: list[Node]) -> bool:
    led: list[int] = []
    for node in nodes:
        led += await _leading(node)
    led.sort()
    return led == list(range(PARTITIONS))


def _register(node: Node, endpoint: Endpoint) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{node.admin}/deployments",
        data=json.dumps({"uri": endpoint.uri}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 201)


def _cluster_node(name: str, directory: Path, bootstrap: str, prefix: str) -> Node:
    flags = ["--cluster", "--cluster-session-timeout-ms", str(SESSION_TIMEOUT_MS)]
    return Node(
        "kafka",
        directory / name,
        bootstrap,
        PARTITIONS,
        extra=[*flags, "--node-name", name],
        topic_prefix=prefix,
    )


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A Tansu broker for this test alone: the test stops and continues its process."""
    broker = TansuBroker.start(tmp_path)
    yield broker
    if broker.process.poll() is None:
        os.kill(broker.process.pid, signal.SIGCONT)  # a failed test must not leave it stopped
    broker.stop()


def _logs(processes: dict[str, Any]) -> str:
    return "\n".join(
        f"----- {name} (tail) -----\n{p.output()[-15000:]}" for name, p in processes.items()
    )


async def test_a_broker_outage_is_ridden_out_under_load(
    own_broker: TansuBroker, tmp_path: Path
) -> None:
    """One outage, two deployments on the same broker: a single node, and a 2-node cluster
    (whose group membership must come back too). Each has its own topics and load."""
    bootstrap = own_broker.bootstrap
    groups = {
        "single": [
            Node(
                "kafka",
                tmp_path / "single",
                bootstrap,
                PARTITIONS,
                topic_prefix=unique_topic("outage"),
            )
        ],
        "cluster": [
            _cluster_node(n, tmp_path, bootstrap, prefix)
            for prefix in [unique_topic("outage")]
            for n in ("a", "b")
        ],
    }
    nodes = [node for group in groups.values() for node in group]
    endpoint = Endpoint(APP, tmp_path)
    processes: dict[str, Any] = {"endpoint": endpoint.process}
    processes.update({f"node {n.ingress}": n.process for n in nodes})
    try:
        endpoint.start()
        for node in nodes:
            await asyncio.to_thread(node.start)
        for group in groups.values():
            await asyncio.to_thread(_register, group[0], endpoint)
            await _wait_for(lambda g=group: _leads_all(g), 30, "every partition led")
        loads = {
            name: Load(
                [n.ingress for n in group], [f"k{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
            )
            for name, group in groups.items()
        }
        watches = [HealthLog(n.admin) for n in nodes]
        for watch in watches:
            watch.start()
        running = [asyncio.create_task(load.run(workers=6)) for load in loads.values()]
        await asyncio.sleep(3)
        for name, load in loads.items():
            assert load.done, (name, load.statuses)
        before = {name: sum(load.done.values()) for name, load in loads.items()}

        stopped_at = time.monotonic()
        os.kill(own_broker.process.pid, signal.SIGSTOP)
        await asyncio.sleep(OUTAGE_S / 2)
        # Admin work that must be logged is refused the same way: a new deployment (another URI
        # of the same endpoint: the metadata log) and a kill (a partition's log).
        refused = []
        for node in nodes:
            refused.append(
                await _send_json("POST", f"{node.admin}/deployments", {"uri": endpoint.uri + "/"})
            )
            unknown = "inv_" + uuid.uuid4().hex + uuid.uuid4().hex[:16]
            refused.append(await _send_json("PATCH", f"{node.admin}/invocations/{unknown}/kill"))
        await asyncio.sleep(OUTAGE_S / 2)
        during = {name: sum(load.done.values()) - before[name] for name, load in loads.items()}
        os.kill(own_broker.process.pid, signal.SIGCONT)
        resumed_at = time.monotonic()

        for node in nodes:
            await _wait_for(lambda n=node: _healthy(n), RECOVERY_BOUND_S, "health 200 again")
        healthy_after = time.monotonic() - resumed_at
        # Served again: new requests complete on every deployment.
        for load in loads.values():
            served = sum(load.done.values())
            await _wait_for(
                lambda ld=load, s=served: asyncio.sleep(0, sum(ld.done.values()) > s + 10),
                RECOVERY_BOUND_S,
                "requests completing again",
            )
            load.stop()
        await asyncio.wait_for(asyncio.gather(*running), RECOVERY_BOUND_S)
        for watch in watches:
            await watch.stop()
        for name, load in loads.items():
            first_success = min(t for t in load.succeeded_at if t > resumed_at) - resumed_at
            print(
                f"{name}: outage {OUTAGE_S}s: first success {first_success:.1f}s after SIGCONT "
                f"(all nodes healthy {healthy_after:.1f}s after); {before[name]} done before, "
                f"{during[name]} during, {sum(load.done.values())} in all, {load.retries} "
                f"retries {load.statuses}"
            )

        for load in loads.values():
            assert not load.bad, load.bad[:5]
        for status, retry_after, body in refused:
            assert status == 503 and retry_after == "1", (status, retry_after, body)
            assert "unreachable" in body["message"], body
        # The HTTP servers stayed up, and health said why while the broker was away.
        for watch in watches:
            outage = watch.between(stopped_at + 15, resumed_at)
            assert outage, "no health answer during the outage"
            assert all(status == 503 for _, status, _ in outage[-10:]), outage[-10:]
            message = outage[-1][2]["message"]
            assert "log" in message and "unreachable" in message, message
        for name, group in groups.items():
            await _wait_for(lambda g=group: _leads_all(g), RECOVERY_BOUND_S, "leadership restored")
            # Counts exact: every request that got its 200 applied once, no retry twice.
            load = loads[name]
            for node in group:
                counts = await _counts(node.ingress, load.keys)
                assert counts == {k: load.done.get(k, 0) for k in load.keys}, (name, counts)
    except BaseException:
        print(_logs(processes))
        raise
    finally:
        for node in nodes:
            node.stop()
        endpoint.stop()


async def test_a_rolling_restart_fails_no_idempotent_request(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = unique_topic("rolling")
    nodes = [_cluster_node(n, tmp_path, kafka_bootstrap, prefix) for n in ("a", "b", "c")]
    endpoint = Endpoint(APP, tmp_path)
    processes: dict[str, Any] = {"endpoint": endpoint.process}
    processes.update({f"node {i}": n.process for i, n in enumerate(nodes)})
    try:
        endpoint.start()
        for node in nodes:
            await asyncio.to_thread(node.start)
        await asyncio.to_thread(_register, nodes[0], endpoint)
        await _wait_for(lambda: _leads_all(nodes), 30, "every partition led")
        keys = [f"k{i}-{uuid.uuid4().hex[:6]}" for i in range(8)]
        load = Load([n.ingress for n in nodes], keys)
        running = asyncio.create_task(load.run(workers=6))
        await asyncio.sleep(2)
        for node in nodes:
            before = sum(load.done.values())
            await asyncio.to_thread(node.stop)  # SIGTERM, waits for the exit
            await asyncio.to_thread(node.start)  # same data dir; returns once health is 200
            await _wait_for(lambda: _leads_all(nodes), 60, "every partition led")
            await _wait_for(
                lambda b=before: asyncio.sleep(0, sum(load.done.values()) > b + 10),
                60,
                "requests completing after the restart",
            )
        load.stop()
        await asyncio.wait_for(running, 60)
        print(
            f"rolling restart: {sum(load.done.values())} done, {load.retries} retries "
            f"{load.statuses}"
        )
        assert not load.bad, load.bad[:5]
        for node in nodes:
            counts = await _counts(node.ingress, keys)
            assert counts == {k: load.done.get(k, 0) for k in keys}, (counts, load.done)
    except BaseException:
        print(_logs(processes))
        raise
    finally:
        for node in nodes:
            node.stop()
        endpoint.stop()
