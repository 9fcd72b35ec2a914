"""Replica placement end to end (README "A cluster"): three ``cairn server --cluster`` nodes on
Tansu with ``--replication 2`` and 12 partitions divide the work; a kill -9 under load keeps
every count exact and the surviving leaders' epochs; a fourth node with an empty data dir joins
from snapshots and finishes the pending work of the partitions it takes over."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from partition_processor.ids import object_partition_key, parse_partition_key, partition_of
from tests.e2e.harness import Client, Endpoint, Node
from tests.support.broker import unique_topic

APP = "tests.e2e.apps.snapshots:app"
PARTITIONS = 12
SESSION_TIMEOUT_MS = 3000

pytestmark = pytest.mark.timeout(400)


@dataclass
class Cluster:
    directory: Path
    bootstrap: str
    prefix: str
    endpoint: Endpoint
    nodes: dict[str, Node] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)

    async def start(self, name: str) -> Client:
        flags = [
            "--cluster",
            "--cluster-session-timeout-ms",
            str(SESSION_TIMEOUT_MS),
            "--replication",
            "2",
            "--node-name",
            name,
            "--snapshot-repository",
            f"file://{self.directory / 'snaps'}",
            "--snapshot-interval-records",
            "0",  # on demand only: the test decides what the snapshots hold
        ]
        node = Node(
            "kafka",
            self.directory / name,
            self.bootstrap,
            PARTITIONS,
            extra=flags,
            topic_prefix=self.prefix,
        )
        self.nodes[name] = node
        await asyncio.to_thread(node.start)
        client = self.clients[name] = Client(node)
        return client

    def logs(self) -> str:
        processes = [(name, node.process) for name, node in self.nodes.items()]
        return "\n".join(
            f"----- {name} (tail) -----\n{process.output()[-12000:]}"
            for name, process in [*processes, ("endpoint", self.endpoint.process)]
        )


@pytest.fixture
async def cluster(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[Cluster]:
    started = Cluster(tmp_path, kafka_bootstrap, unique_topic("placement"), Endpoint(APP, tmp_path))
    started.endpoint.start()
    try:
        # Together: the group places them in one or two rounds rather than one per node.
        clients = await asyncio.gather(*(started.start(name) for name in ("a", "b", "c")))
        await clients[0].register(started.endpoint)
        await _settled(started, ["a", "b", "c"])
        yield started
    finally:
        print(started.logs())  # shown when the test failed
        for client in started.clients.values():
            await client.close()
        for node in started.nodes.values():
            node.stop()
        started.endpoint.stop()


async def _view(client: Client) -> dict[str, Any]:
    response = await client.admin("GET", "/cluster")
    assert response.status == 200, response.body
    view: dict[str, Any] = response.json()
    return view


def _placement(view: dict[str, Any]) -> tuple[int, list[tuple[str, list[str], int]]]:
    """What every node must show alike: generation, and per partition leader, standbys, epoch."""
    partitions = [(p["leader"], p["standbys"], p["epoch"]) for p in view["partitions"]]
    return view["generation"], partitions


async def _settled(cluster: Cluster, names: list[str]) -> dict[str, Any]:
    """Wait until every node of ``names`` shows the same placement over exactly them, with
    every partition led (its leader's worker leads it) and no node unreachable."""
    clients = [cluster.clients[n] for n in names]
    node_ids = {n: (await _view(cluster.clients[n]))["node"] for n in names}

    async def check() -> dict[str, Any] | None:
        views = [await _view(client) for client in clients]
        if any(v["unreachable"] for v in views):
            return None
        if len({repr(_placement(v)) for v in views}) != 1:
            return None
        members = {n for p in views[0]["partitions"] for n in [p["leader"], *p["standbys"]]}
        if members != set(node_ids.values()):
            return None
        led = sorted(p for v in views for p in v["leading"])
        return views[0] if led == list(range(PARTITIONS)) else None

    result: dict[str, Any] = await clients[0].wait_for(check, timeout_s=90, interval_s=0.3)
    return result


async def _metric(client: Client, name: str) -> float:
    response = await client.admin("GET", "/metrics")
    assert response.status == 200
    match = re.search(rf"^{name} ([0-9.e+]+)$", response.body.decode(), re.MULTILINE)
    assert match is not None, f"{name} not exposed"
    return float(match.group(1))


async def _check_each_node_applies_only_its_replicas(cluster: Cluster) -> None:
    """3 nodes, R=2, 12 partitions: 8 replicas each (±1), one placement shown everywhere."""
    views = {name: await _view(client) for name, client in cluster.clients.items()}
    shown = {repr({k: v[k] for k in ("generation", "partitions")}) for v in views.values()}
    assert len(shown) == 1, views  # the same placement, epochs and positions on every node
    one = views["a"]
    assert one["replication"] == 2
    for name, client in cluster.clients.items():
        node_id = views[name]["node"]
        replicas = [
            p["partition"] for p in one["partitions"] if node_id in [p["leader"], *p["standbys"]]
        ]
        assert views[name]["applying"] == replicas
        assert await _metric(client, "cairn_partitions_applied") == len(replicas)
        assert 7 <= len(replicas) <= 9, (name, replicas)  # 12 x 2 / 3 = 8, ±1
        led = [p["partition"] for p in one["partitions"] if p["leader"] == node_id]
        assert views[name]["leading"] == led and 3 <= len(led) <= 5
    for partition in one["partitions"]:
        assert len(partition["standbys"]) == 1
        assert all(position is not None for position in partition["applied"].values())


async def test_nodes_apply_only_their_replicas_and_a_kill_under_load_loses_nothing(
    cluster: Cluster,
) -> None:
    await _check_each_node_applies_only_its_replicas(cluster)
    run = uuid.uuid4().hex[:8]
    total, keys = 3000, 30
    names = ["a", "b", "c"]
    victim = "c"
    done = 0
    alive = set(names)
    gate = asyncio.Semaphore(64)
    victim_id = (await _view(cluster.clients[victim]))["node"]

    async def add(i: int) -> None:
        nonlocal done
        headers = {"idempotency-key": f"{run}-{i}"}
        async with gate:
            for attempt in range(200):  # generous: a failover pauses partitions for seconds
                name = names[(i + attempt) % len(names)]  # round-robin; a retry moves on
                if name not in alive:
                    continue
                try:
                    # A reply in flight from a killed leader to the ingress is lost (the client
                    # attaches again by retrying its idempotency key): wait 10 s, not forever.
                    response = await asyncio.wait_for(
                        cluster.clients[name].call(
                            f"/Counter/{run}-{i % keys}/add", 1, headers=headers
                        ),
                        10,
                    )
                except (OSError, aiohttp.ClientError):  # its node was killed meanwhile
                    await asyncio.sleep(0.2)
                    continue
                if response.status == 200:
                    done += 1
                    return
                await asyncio.sleep(0.2)
            raise AssertionError(f"add {i} never accepted")

    async def kill_midway() -> dict[str, Any]:
        await cluster.clients["a"].wait_for(lambda: _at_least(total // 3), timeout_s=300)
        before = await _view(cluster.clients["a"])
        alive.discard(victim)
        cluster.nodes[victim].kill()
        return before

    async def _at_least(n: int) -> bool:
        return done >= n

    results = await asyncio.gather(kill_midway(), *(add(i) for i in range(total)))
    before: dict[str, Any] = results[0]
    after = await _settled(cluster, ["a", "b"])
    for old, new in zip(before["partitions"], after["partitions"], strict=True):
        if old["leader"] == victim_id:
            assert new["leader"] != victim_id and new["epoch"] > old["epoch"], (old, new)
        else:  # the leader survived: same leader, same epoch (its attempts never restarted)
            assert (new["leader"], new["epoch"]) == (old["leader"], old["epoch"]), (old, new)
    for key in range(keys):
        response = await cluster.clients["a"].call(f"/Counter/{run}-{key}/get")
        assert (response.status, response.json()) == (200, total // keys), key


async def _pending_per_partition(client: Client, run: str) -> dict[str, list[str]]:
    """Workflows waiting on a promise, sleepers and suspended awakeable waiters, at least one of
    each on every partition (unkeyed invocations land where their random id says)."""
    workflows: dict[int, str] = {}
    for n in itertools.count():
        key = f"{run}-wf{n}"
        partition = partition_of(object_partition_key("Signals", key), PARTITIONS)
        if partition not in workflows:
            workflows[partition] = key
        if len(workflows) == PARTITIONS:
            break
    started = [
        f"{key} {await client.send(f'/Signals/{key}/run', False)}" for key in workflows.values()
    ]
    sleepers: dict[int, str] = {}
    while len(sleepers) < PARTITIONS:
        invocation = await client.send("/Sleepy/nap", 30_000)
        sleepers.setdefault(partition_of(parse_partition_key(invocation), PARTITIONS), invocation)
    waiters: dict[int, tuple[str, str]] = {}
    for n in itertools.count():
        recorder = f"{run}-aw{n}"
        invocation = await client.send("/Awakeables/wait_for_one", recorder)
        waiters.setdefault(
            partition_of(parse_partition_key(invocation), PARTITIONS), (invocation, recorder)
        )
        if len(waiters) == PARTITIONS:
            break
    return {
        "workflows": started,
        "sleepers": list(sleepers.values()),
        "waiters": [f"{i} {r}" for i, r in waiters.values()],
    }


async def test_a_fourth_node_joins_from_snapshots_and_finishes_moved_work(
    cluster: Cluster,
) -> None:
    a = cluster.clients["a"]
    run = uuid.uuid4().hex[:8]
    gate = asyncio.Semaphore(24)

    async def add(i: int) -> None:
        async with gate:
            headers = {"idempotency-key": f"{run}-{i}"}
            response = await a.call(f"/Counter/{run}-{i % 24}/add", 1, headers=headers)
            assert response.status == 200, response.body

    await asyncio.gather(*(add(i) for i in range(600)))  # a log worth not replaying
    pending = await _pending_per_partition(a, run)

    async def parked(key: str) -> bool:
        return (await a.call(f"/Signals/{key}/stage")).json() == "waiting for answer"

    for item in pending["workflows"]:
        workflow_key = item.split()[0]
        await a.wait_for(lambda k=workflow_key: parked(k))
    awakeables: dict[str, str] = {}
    for item in pending["waiters"]:
        invocation, recorder = item.split()

        async def published(r: str = recorder) -> list[Any] | None:
            entries: list[Any] = (await a.call(f"/Recorder/{r}/entries")).json()
            return entries or None

        awakeables[invocation] = (await a.wait_for(published))[0]["entry"]
    for client in cluster.clients.values():  # each leader snapshots the partitions it leads
        response = await client.admin("POST", "/snapshots", {})
        assert response.status == 201, response.body

    d = await cluster.start("d")  # an empty data dir
    view = await _settled(cluster, ["a", "b", "c", "d"])
    d_id = (await _view(d))["node"]
    mine = [p for p in view["partitions"] if d_id in [p["leader"], *p["standbys"]]]
    led = [p["partition"] for p in mine if p["leader"] == d_id]
    assert 5 <= len(mine) <= 7 and 2 <= len(led) <= 4, view  # 12 x 2 / 4 = 6; 12 / 4 = 3
    assert await _metric(d, "cairn_snapshot_restores_total") == len(mine)
    in_log = sum(p["applied"][p["leader"]] + 1 for p in mine)
    replayed = await _metric(d, "cairn_records_applied_total")
    assert replayed < in_log / 4, (replayed, in_log)  # the suffixes only
    for p in led:  # the work d took over was still pending when d started leading it
        sleeper = next(
            s for s in pending["sleepers"] if partition_of(parse_partition_key(s), PARTITIONS) == p
        )
        status = (await d.admin("GET", f"/invocations/{sleeper}")).json()["status"]
        assert status != "completed", (p, status)

    await _reads_from_any_node(cluster, run, pending["sleepers"])

    # Everything completes, through d's ingress (d serves every partition).
    for item in pending["workflows"]:
        key, invocation = item.split()
        resolved = await d.call(f"/Signals/{key}/resolve", {"name": "answer", "value": "yes"})
        assert resolved.status == 200, resolved.body
        result = await d.attach(invocation)
        assert (result.status, result.json()) == (200, {"early_peek": None, "answer": "yes"})
    for invocation, awakeable in awakeables.items():
        response = await d.call(f"/restate/awakeables/{awakeable}/resolve", "woken")
        assert response.status in (200, 202), response.body
        result = await d.attach(invocation)
        assert (result.status, result.json()) == (200, "got woken")
    for sleeper in pending["sleepers"]:
        result = await d.attach(sleeper)
        assert (result.status, result.json()) == (200, "rested")


async def _reads_from_any_node(cluster: Cluster, run: str, invocations: list[str]) -> None:
    """Each node applies half the partitions; admin reads of the others go to a replica."""
    listings = []
    for client in cluster.clients.values():
        for key in range(24):
            response = await client.admin("GET", f"/services/Counter/state/{run}-{key}")
            assert response.status == 200, response.body
            assert response.json()["state"] == {"count": 25}, (key, response.json())
        for invocation in invocations:
            response = await client.admin("GET", f"/invocations/{invocation}")
            assert (response.status, response.json()["id"]) == (200, invocation), response.body
            # The web console's page too: its journal timeline comes from a replica as well.
            page = await client.admin("GET", f"/ui/invocations/{invocation}")
            assert page.status == 200, page.body
            assert b'data-type="sleep"' in page.body
        page = await client.admin("GET", f"/ui/state?service=Counter&key={run}-0")
        assert page.status == 200 and b"25" in page.body, page.body
        overview = await client.admin("GET", "/ui")
        assert overview.status == 200
        assert overview.body.count(b'class="replica leader"') == PARTITIONS
        ids: list[str] = []
        cursor = None
        while True:
            query = f"?limit=500&cursor={cursor}" if cursor else "?limit=500"
            response = await client.admin("GET", f"/invocations{query}")
            assert response.status == 200, response.body
            ids += [row["id"] for row in response.json()["invocations"]]
            if (cursor := response.json()["next"]) is None:
                break
        listings.append(sorted(ids))
    assert set(invocations) <= set(listings[0])
    assert all(listing == listings[0] for listing in listings)  # every partition, every node
    # The invocations pinned to the deployment (README "Versions"): every node counts every
    # partition, not only those it applies (nor the stale rows of those it no longer applies).
    counts = []
    for client in cluster.clients.values():
        response = await client.admin("GET", "/deployments")
        assert response.status == 200, response.body
        counts.append([d["pinned_invocations"] for d in response.json()["deployments"]])
    assert all(count == counts[0] for count in counts), counts
    assert sum(counts[0]) >= len(invocations), (counts, len(invocations))
