"""Hostile input against one node (24 partitions): each poison gets a clear answer, and then
every partition still serves with exact counts (DESIGN §11, the Reliability issue)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from partition_processor.ids import awakeable_id
from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import Client
from tests.e2e.serving import every_partition_serves

APP = "tests.e2e.apps.poison:app"
PARTITIONS = 24
MiB = 1024 * 1024
SIGNED_ID = "inv_-" + "0" * 47


@pytest.fixture(scope="module")
def shared(
    log_kind: str, bootstrap: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    started = start_cluster(
        APP, log_kind, tmp_path_factory.mktemp("poison"), bootstrap, partitions=PARTITIONS
    )
    yield started
    stop_cluster(started)


def _no_tracebacks(cluster: Cluster) -> None:
    assert "Traceback" not in cluster.node.process.output()


async def _raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=60)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_a_handler_calling_an_object_with_a_huge_key_fails_only_that_call(
    shared: Cluster, client: Client
) -> None:
    response = await client.call("/Poison/long_key_call", 70_000)
    assert response.status == 400, response.body
    assert "key of 70000 bytes exceeds the limit" in response.json()["message"]
    await every_partition_serves(client, PARTITIONS)


async def test_a_steep_retry_policy_ends_with_the_last_failure(
    shared: Cluster, client: Client
) -> None:
    response = await client.call("/Poison/always_fails")
    assert response.status == 500, response.body
    assert "never succeeds" in response.json()["message"]
    status = await client.invocation(response.headers["x-restate-id"])
    assert status["status"] == "completed" and status["attempt"] == 6
    await every_partition_serves(client, PARTITIONS)


async def test_signed_ids_are_refused_with_400(shared: Cluster, client: Client) -> None:
    for method, url in (
        ("GET", f"{shared.node.ingress}/restate/invocation/{SIGNED_ID}/attach"),
        ("GET", f"{shared.node.ingress}/restate/invocation/{SIGNED_ID}/output"),
        ("POST", f"{shared.node.ingress}/restate/awakeables/{awakeable_id(SIGNED_ID, 1)}/resolve"),
        ("GET", f"{shared.node.admin}/invocations/{SIGNED_ID}"),
        ("PATCH", f"{shared.node.admin}/invocations/{SIGNED_ID}/kill"),
        ("PATCH", f"{shared.node.admin}/invocations/{SIGNED_ID}/cancel"),
        ("PATCH", f"{shared.node.admin}/invocations/{SIGNED_ID}/purge"),
    ):
        response = await client.request(method, url, "x" if method == "POST" else None)
        assert response.status == 400, (url, response.body)
        assert "not an" in response.json()["message"]
    await every_partition_serves(client, PARTITIONS)
    _no_tracebacks(shared)


async def test_a_body_just_under_the_limit_goes_to_the_handler_and_back(
    shared: Cluster, client: Client
) -> None:
    value = "y" * (10 * MiB - 2)  # with its quotes: exactly the 10 MiB limit
    response = await client.call("/Poison/echo_back", value)
    assert response.status == 200, response.body[:200]
    assert response.json() == value
    too_big = await client.call("/Poison/echo", "y" * (10 * MiB))
    assert too_big.status == 413, too_big.body[:200]
    assert too_big.json()["code"] == 413 and "exceeds" in too_big.json()["message"]
    await every_partition_serves(client, PARTITIONS, rounds=1)


@pytest.mark.parametrize(
    ("path", "size"),
    [
        ("/Poison/big_output", 11 * MiB),  # over the entry limit
        ("/Poison/big_output", 30 * MiB),  # over the gRPC message limit too
        ("/Poison/big_run", 11 * MiB),
        ("/Counter/big/big_state", 11 * MiB),
    ],
)
async def test_an_oversized_entry_from_a_handler_fails_terminally(
    shared: Cluster, client: Client, path: str, size: int
) -> None:
    response = await client.call(path, size)
    assert response.status == 413, response.body[:300]
    assert "exceed" in response.json()["message"]
    status = await client.invocation(response.headers["x-restate-id"])
    assert status["attempt"] == 1  # not retried
    await every_partition_serves(client, PARTITIONS, rounds=1)


async def test_bad_input_gets_a_clear_4xx_and_no_traceback(shared: Cluster, client: Client) -> None:
    checks: list[tuple[int, str, object]] = []
    for delay in ("9" * 400 + "s", "99999999999999999999d", "1e999s", "P99999999999999999999D"):
        response = await client.call(f"/Poison/echo/send?delay={delay}", "x")
        checks.append((response.status, "delay", delay))
    deep = b"[" * 100_000 + b"]" * 100_000
    response = await client.call("/Poison/echo", raw=deep)
    checks.append((response.status, "deep json", response.body[:100]))
    response = await client.call(f"/Counter/{'k' * 5000}/add", 1)
    checks.append((response.status, "long key", response.body[:100]))
    response = await client.call("/Poison/echo", "x", headers={"idempotency-key": "i" * 5000})
    checks.append((response.status, "long idempotency key", response.body[:100]))
    for uri in ("http://127.0.0.1:99999", "http://[::1", "ftp://x:1", "http://h:-1", "http://h:x"):
        response = await client.admin("POST", "/deployments", {"uri": uri})
        checks.append((response.status, "uri", (uri, response.body[:100])))
    status, body = await _raw_http(
        shared.node.ingress_port,
        b"POST /Poison/echo HTTP/1.1\r\nHost: x\r\nX-Bad: \xff\xfe\r\n"
        b'Content-Type: application/json\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"x"',
    )
    checks.append((status, "non-UTF-8 header", body[:100]))
    assert json.loads(body)["code"] == 400
    for garbage in (b"GARBAGE\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"):
        status, body = await _raw_http(shared.node.ingress_port, garbage)
        checks.append((status, "malformed http", garbage))
    assert [c for c in checks if c[0] != 400 and c[0] != 431] == []
    await every_partition_serves(client, PARTITIONS, rounds=1)
    _no_tracebacks(shared)
    metrics = (await client.admin("GET", "/metrics")).body.decode()
    assert 'cairn_http_malformed_requests_total{server="http"}' in metrics


async def test_every_partition_still_serves_after_all_of_it(
    shared: Cluster, client: Client, tmp_path: Path
) -> None:
    await every_partition_serves(client, PARTITIONS, rounds=5)
    _no_tracebacks(shared)
