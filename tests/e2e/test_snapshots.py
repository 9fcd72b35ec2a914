"""Snapshots, restore and trimming end to end: a real ``cairn server`` and SDK endpoint over
HTTP, on the local log and on Kafka (Tansu), with a file:// snapshot repository."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from partition_processor.ids import object_partition_key, partition_of
from tests.e2e.conftest import start_cluster, stop_cluster
from tests.e2e.harness import Client, Endpoint, Node
from tests.e2e.test_cli import _run_main
from tests.support.broker import unique_topic
from tests.support.s3 import S3Server

APP = "tests.e2e.apps.snapshots:app"
PARTITIONS = 2
KEYS = 10
INTERVAL = 40

pytestmark = pytest.mark.timeout(300)


def _options(repository: Path, topic_prefix: str | None) -> dict[str, Any]:
    return {
        "partitions": PARTITIONS,
        "topic_prefix": topic_prefix,
        "extra": [
            "--snapshot-repository",
            f"file://{repository}",
            "--snapshot-interval-records",
            str(INTERVAL),
            "--local-log-segment-bytes",
            "2048",
        ],
    }


def _run_id() -> str:
    """A run whose ``KEYS`` counters cover every partition: each partition then takes enough
    records for two snapshots (with one random id in ~500 they would all land on one)."""
    while True:
        run = uuid.uuid4().hex[:8]
        keys = (object_partition_key("Counter", f"{run}-{k}") for k in range(KEYS))
        if {partition_of(key, PARTITIONS) for key in keys} == set(range(PARTITIONS)):
            return run


async def _add_all(client: Client, run: str, count: int, start: int = 0) -> None:
    """``count`` idempotent adds of 1 spread over ``KEYS`` counters; retried until accepted."""
    gate = asyncio.Semaphore(16)

    async def add(i: int) -> None:
        async with gate:
            headers = {"idempotency-key": f"{run}-{i}"}
            for _ in range(100):  # generous: a failover pauses the partition for seconds
                response = await client.call(f"/Counter/{run}-{i % KEYS}/add", 1, headers=headers)
                if response.status == 200:
                    return
                await asyncio.sleep(0.2)
            raise AssertionError(f"add {i} not accepted: {response.status} {response.body!r}")

    await asyncio.gather(*(add(i) for i in range(start, start + count)))


async def _counts(client: Client, run: str) -> list[int]:
    counts = []
    for key in range(KEYS):
        response = await client.call(f"/Counter/{run}-{key}/get")
        assert response.status == 200, response.body
        counts.append(response.json())
    return counts


async def _metric(client: Client, name: str) -> float:
    response = await client.admin("GET", "/metrics")
    assert response.status == 200
    match = re.search(rf"^{name} ([0-9.e+]+)$", response.body.decode(), re.MULTILINE)
    assert match is not None, f"{name} not exposed"
    return float(match.group(1))


async def _snapshots(client: Client) -> list[dict[str, Any]]:
    response = await client.admin("GET", "/snapshots")
    assert response.status == 200, response.body
    listed: list[dict[str, Any]] = response.json()["snapshots"]
    return listed


async def _two_snapshots_each(client: Client) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        listed = await _snapshots(client)
        per = [sum(1 for s in listed if s["partition"] == p) for p in range(PARTITIONS)]
        return listed if per == [2] * PARTITIONS else None

    result: list[dict[str, Any]] = await client.wait_for(check, timeout_s=60)
    return result


def _first_segment(data_dir: Path, partition: int) -> int:
    segments = sorted((data_dir / "log" / "partitions" / f"p{partition:04d}").glob("*.seg"))
    return int(segments[0].stem)


@pytest.fixture
def topic_prefix(log_kind: str) -> str | None:
    return unique_topic("snap") if log_kind == "kafka" else None


async def test_snapshots_trim_and_a_restarted_node_recovers_exactly(
    log_kind: str, bootstrap: str | None, tmp_path: Path, topic_prefix: str | None
) -> None:
    repository = tmp_path / "snaps"
    cluster = start_cluster(
        APP, log_kind, tmp_path, bootstrap, **_options(repository, topic_prefix)
    )
    client = Client(cluster.node)
    run = _run_id()
    try:
        await _add_all(client, run, 400)
        assert await _counts(client, run) == [400 // KEYS] * KEYS
        listed = await _two_snapshots_each(client)
        assert all(s["applied_lsn"] >= INTERVAL for s in listed)
        assert await _metric(client, "cairn_snapshots_taken_total") >= 2 * PARTITIONS
        if log_kind == "local":
            # Segments below the older kept snapshot of each partition are deleted.
            async def trimmed() -> bool:
                return all(_first_segment(tmp_path / "data", p) > 0 for p in range(PARTITIONS))

            await client.wait_for(trimmed, timeout_s=30)
        # kill -9 and restart on the same data dir: the counts are exact, and it goes on.
        await cluster.node.restart()
        assert await _counts(client, run) == [400 // KEYS] * KEYS
        await _add_all(client, run, 100, start=400)
        await _add_all(client, run, 100, start=0)  # repeats: idempotent, no effect
        assert await _counts(client, run) == [500 // KEYS] * KEYS
    finally:
        await client.close()
        stop_cluster(cluster)


async def _pending_work(client: Client, run: str) -> dict[str, str]:
    """A workflow waiting on a promise, a sleeping handler and a suspended awakeable waiter."""
    workflow = await client.send(f"/Signals/{run}/run", False)
    sleeper = await client.send("/Sleepy/nap", 12_000)
    waiter = await client.send("/Awakeables/wait_for_one", run)

    async def recorded() -> list[Any] | None:
        response = await client.call(f"/Recorder/{run}/entries")
        assert response.status == 200, response.body
        entries: list[Any] = response.json()
        return entries or None

    [published] = await client.wait_for(recorded)
    awakeable_id: str = published["entry"]

    async def parked() -> bool:
        stage = await client.call(f"/Signals/{run}/stage")
        return stage.json() == "waiting for answer"

    await client.wait_for(parked)
    return {"workflow": workflow, "sleeper": sleeper, "waiter": waiter, "awakeable": awakeable_id}


async def _complete_pending(client: Client, run: str, pending: dict[str, str]) -> None:
    resolved = await client.call(f"/Signals/{run}/resolve", {"name": "answer", "value": "yes"})
    assert resolved.status == 200, resolved.body
    awakeable = await client.call(f"/restate/awakeables/{pending['awakeable']}/resolve", "woken")
    assert awakeable.status in (200, 202), awakeable.body
    results = {
        name: await client.attach(pending[name]) for name in ("workflow", "sleeper", "waiter")
    }
    assert results["workflow"].status == 200, results["workflow"].body
    assert results["workflow"].json() == {"early_peek": None, "answer": "yes"}
    assert (results["sleeper"].status, results["sleeper"].json()) == (200, "rested")
    assert (results["waiter"].status, results["waiter"].json()) == (200, "got woken")


async def test_a_node_without_local_state_restores_snapshots_and_replays_only_suffixes(
    log_kind: str, bootstrap: str | None, tmp_path: Path, topic_prefix: str | None
) -> None:
    """Local log: the store is deleted, the (trimmed) log kept. Kafka: a brand-new data dir on
    the same topics. Either way the node restores every partition from its snapshot, replays
    only the suffix, and then serves: counts exact, parked work completes."""
    repository = tmp_path / "snaps"
    options = _options(repository, topic_prefix)
    cluster = start_cluster(APP, log_kind, tmp_path, bootstrap, **options)
    client = Client(cluster.node)
    run = _run_id()
    fresh: Node | None = None
    try:
        await _add_all(client, run, 400)
        pending = await _pending_work(client, run)
        # On demand: the parked work is inside the newest snapshots.
        created = await client.admin("POST", "/snapshots", {})
        assert created.status == 201, created.body
        assert sorted(s["partition"] for s in created.json()["snapshots"]) == [0, 1]
        await _two_snapshots_each(client)
        applied_by_first = await _metric(client, "cairn_records_applied_total")
        cluster.node.kill()

        if log_kind == "local":
            shutil.rmtree(tmp_path / "data" / "store")
            fresh = cluster.node
        else:
            assert bootstrap is not None
            fresh = Node(log_kind, tmp_path / "fresh", bootstrap, **options)
            cluster.node = fresh
        fresh.start()
        client2 = Client(fresh)
        try:
            assert await _metric(client2, "cairn_snapshot_restores_total") == PARTITIONS
            replayed = await _metric(client2, "cairn_records_applied_total")
            assert replayed < applied_by_first / 4, (replayed, applied_by_first)
            assert await _counts(client2, run) == [400 // KEYS] * KEYS
            await _complete_pending(client2, run, pending)
            await _add_all(client2, run, 100, start=400)
            assert await _counts(client2, run) == [500 // KEYS] * KEYS
        finally:
            await client2.close()
    finally:
        await client.close()
        stop_cluster(cluster)


async def test_snapshot_admin_errors_are_clear(
    log_kind: str, bootstrap: str | None, tmp_path: Path, topic_prefix: str | None
) -> None:
    if log_kind == "kafka":
        pytest.skip("admin validation does not depend on the log")
    cluster = start_cluster(
        APP, log_kind, tmp_path, bootstrap, **_options(tmp_path / "snaps", topic_prefix)
    )
    client = Client(cluster.node)
    try:
        for body, status in (
            ({"partition": PARTITIONS}, 400),
            ({"partition": "one"}, 400),
            ({"partition": -1}, 400),
            ({"bogus": 1}, 400),
            ([1], 400),
        ):
            response = await client.admin("POST", "/snapshots", body)
            assert response.status == status, (body, response.body)
            assert response.json()["code"] == status and response.json()["message"]
        bad_json = await client.request("POST", f"{cluster.node.admin}/snapshots", raw=b"{")
        assert bad_json.status == 400
        deep = b"[" * 2000 + b"]" * 2000  # refused by the one JSON check of the node's bodies
        nested = await client.request("POST", f"{cluster.node.admin}/snapshots", raw=deep)
        assert nested.status == 400 and "deeper" in nested.json()["message"], nested.body
        one = await client.admin("POST", "/snapshots", {"partition": 1})
        assert one.status == 201, one.body
        [taken] = one.json()["snapshots"]
        listed = await client.admin("GET", "/snapshots?partition=1")
        assert taken["name"] in [s["name"] for s in listed.json()["snapshots"]]
        assert (await client.admin("GET", "/snapshots?partition=x")).status == 400
        # The CLI wraps both.
        cli = [sys.executable, "-m", "runtime.cli", "snapshots"]
        admin = ["--admin", cluster.node.admin]
        created = await asyncio.to_thread(
            subprocess.run,
            [*cli, "create", "--partition", "0", *admin],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        assert created.stdout.startswith("partition 0: p00000/"), created.stdout
        listing = await asyncio.to_thread(
            subprocess.run, [*cli, "list", *admin], capture_output=True, text=True, timeout=60
        )
        assert listing.returncode == 0, listing.stderr
        assert "p00000/" in listing.stdout and taken["name"] in listing.stdout
        # And with --json (in this process: a process per call costs seconds).
        as_json = await asyncio.to_thread(
            _run_main, ["snapshots", "list", "--partition", "1", "--json", *admin]
        )
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout) == listed.json()["snapshots"]
        made = await asyncio.to_thread(
            _run_main, ["snapshots", "create", "--partition", "1", "--json", *admin]
        )
        assert made.returncode == 0, made.stderr
        assert [(r["partition"], r["name"][:7]) for r in json.loads(made.stdout)] == [
            (1, "p00001/")
        ]
    finally:
        await client.close()
        stop_cluster(cluster)


async def test_a_node_joins_a_running_cluster_from_snapshots_and_takes_over(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """Two cluster nodes on Kafka: b starts with an empty data dir while a serves, restores
    every partition from a's snapshots, applies only the suffixes, and after a kill -9 of a
    serves every partition with exact counts."""
    prefix = unique_topic("snapcluster")
    options = _options(tmp_path / "snaps", prefix)
    cluster_flags = ["--cluster", "--cluster-session-timeout-ms", "3000"]

    def node(name: str) -> Node:
        extra = [*options["extra"], *cluster_flags, "--node-name", name]
        return Node("kafka", tmp_path / name, kafka_bootstrap, PARTITIONS, extra, None, prefix)

    endpoint = Endpoint(APP, tmp_path)
    a, b = node("a"), node("b")
    endpoint.start()
    clients: list[Client] = []
    try:
        a.start()
        client_a = Client(a)
        clients.append(client_a)
        await client_a.register(endpoint)
        run = _run_id()
        await _add_all(client_a, run, 400)
        await _two_snapshots_each(client_a)
        applied_by_a = await _metric(client_a, "cairn_records_applied_total")

        b.start()
        client_b = Client(b)
        clients.append(client_b)
        assert await _metric(client_b, "cairn_snapshot_restores_total") == PARTITIONS
        replayed = await _metric(client_b, "cairn_records_applied_total")
        assert replayed < applied_by_a / 4, (replayed, applied_by_a)

        a.kill()
        await _add_all(client_b, run, 100, start=400)  # retried while b takes a's partitions
        assert await _counts(client_b, run) == [500 // KEYS] * KEYS
    finally:
        for client in clients:
            await client.close()
        for name, process in (("a", a.process), ("b", b.process), ("endpoint", endpoint.process)):
            print(f"----- {name} (tail) -----\n{process.output()[-15000:]}")
            process.terminate()


async def test_an_s3_repository_serves_a_node_that_lost_its_store(
    log_kind: str, bootstrap: str | None, tmp_path: Path, s3_server: S3Server
) -> None:
    """The same restore through ``s3://`` on a local S3 server (moto): the endpoint comes from
    ``--snapshot-s3-endpoint``, the credentials from the AWS_* environment."""
    if log_kind == "kafka":
        pytest.skip("the repository does not depend on the log; the local log runs it")
    options = _options(tmp_path / "unused", None)
    extra = options["extra"]
    extra[1] = f"s3://{s3_server.bucket()}/e2e/snapshots"
    extra += ["--snapshot-s3-endpoint", s3_server.endpoint]
    env = {k: v for k, v in s3_server.env().items() if k != "AWS_ENDPOINT_URL"}
    cluster = start_cluster(APP, log_kind, tmp_path, bootstrap, **options, env=env)
    client = Client(cluster.node)
    run = _run_id()
    try:
        await _add_all(client, run, 200)
        await _two_snapshots_each(client)
        cluster.node.kill()
        shutil.rmtree(tmp_path / "data" / "store")
        cluster.node.start()
        assert await _metric(client, "cairn_snapshot_restores_total") == PARTITIONS
        assert await _counts(client, run) == [200 // KEYS] * KEYS
    finally:
        await client.close()
        stop_cluster(cluster)
