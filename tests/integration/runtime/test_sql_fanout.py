"""SQL introspection across nodes: a node reads the partitions it applies from its own store and
asks a node applying each other partition over the internal port (real RocksDB stores, a real
internal server and client, a real metadata log)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from partition_processor.commands import Target
from partition_processor.store_rocksdb import RocksDBStore
from partition_processor.tables import Transaction
from partition_processor.values import InvocationStatus
from runtime.admin.sql import Placement, QueryError, SqlQueries
from runtime.internal import InternalClient, InternalRoutes, InternalServer
from runtime.log import LocalLog
from runtime.metadata import Registry
from runtime.supervisor import Supervisor
from sdk.ports import free_port

PARTITIONS = 4
SECRET = secrets.token_bytes(24)


def _fill(store: RocksDBStore, partitions: list[int]) -> None:
    """One invocation and one state value per partition, written as the processor writes."""
    for p in partitions:
        txn = Transaction(store, p)
        target = Target("Counter", "add", "virtual_object", "exclusive", key=f"k{p}")
        txn.put_status(InvocationStatus(f"inv-{p}", target, "completed", 10 * p, 10 * p + 1))
        txn.put_state_value("Counter", f"k{p}", "count", str(p).encode())
        store.commit(txn.writes)


@dataclass
class Pair:
    registry: Registry
    store_a: RocksDBStore
    store_b: RocksDBStore
    client: InternalClient


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    log, supervisor = LocalLog(tmp_path / "metadata", 1), Supervisor()
    await log.start()
    registry = Registry(log)
    await registry.start(supervisor)
    store_a, store_b = RocksDBStore(tmp_path / "a"), RocksDBStore(tmp_path / "b")
    _fill(store_a, [0, 1])
    _fill(store_b, [2, 3])
    # Node b applies partitions 2 and 3 and serves their rows on its internal port.
    b = SqlQueries(
        store_b,
        registry,
        Placement(lambda: frozenset({2, 3}), lambda p: []),
        partitions=PARTITIONS,
        node_id="b",
        scan_rows_max=1000,
        result_rows_max=1000,
        body_timeout_s=5,
        max_body_bytes=1 << 20,
    )
    routes = InternalRoutes()
    b.add_internal_route(routes)
    server = InternalServer(routes, SECRET, max_body_bytes=1 << 20, body_timeout_s=5)
    runner = web.AppRunner(server.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await registry.join("b", "", f"http://127.0.0.1:{port}")
    client = InternalClient(registry, SECRET, timeout_s=5)
    yield Pair(registry, store_a, store_b, client)
    await client.close()
    await runner.cleanup()
    await registry.stop()
    await supervisor.shutdown()
    await log.close()
    store_a.close()
    store_b.close()


def _node_a(pair: Pair, applied: frozenset[int], scan_rows_max: int = 1000) -> SqlQueries:
    return SqlQueries(
        pair.store_a,
        pair.registry,
        Placement(lambda: applied, lambda p: ["b"]),
        partitions=PARTITIONS,
        node_id="a",
        scan_rows_max=scan_rows_max,
        result_rows_max=1000,
        body_timeout_s=5,
        max_body_bytes=1 << 20,
        client=pair.client,
    )


async def test_a_query_reads_local_partitions_and_asks_for_the_rest(pair: Pair) -> None:
    a = _node_a(pair, frozenset({0, 1}))
    columns, rows, truncated = await a.query(
        "SELECT i.partition, i.id, s.value FROM sys_invocation i JOIN state s "
        "ON s.key = i.key AND s.service = i.service ORDER BY i.partition"
    )
    assert columns == ["partition", "id", "value"]
    assert rows == [{"partition": p, "id": f"inv-{p}", "value": p} for p in range(PARTITIONS)]
    assert not truncated


async def test_a_node_refuses_partitions_it_does_not_apply(pair: Pair) -> None:
    a = _node_a(pair, frozenset({1}))  # partition 0 is asked of b, which does not apply it
    with pytest.raises(QueryError) as refused:
        await a.query("SELECT id FROM sys_invocation")
    assert refused.value.status == 503
    assert "not applied on b" in refused.value.message


async def test_the_scan_bound_holds_across_nodes(pair: Pair) -> None:
    a = _node_a(pair, frozenset({0, 1}), scan_rows_max=3)
    with pytest.raises(QueryError) as refused:
        await a.query("SELECT id FROM sys_invocation")
    assert refused.value.status == 413
    columns, rows, truncated = await _node_a(pair, frozenset({0, 1})).query(
        "SELECT id FROM sys_invocation"
    )
    assert len(rows) == PARTITIONS and not truncated


async def test_a_query_past_the_timeout_is_interrupted(pair: Pair) -> None:
    a = SqlQueries(
        pair.store_a,
        pair.registry,
        Placement(lambda: frozenset(range(PARTITIONS)), lambda p: []),
        partitions=PARTITIONS,
        node_id="a",
        scan_rows_max=1000,
        result_rows_max=1000,
        body_timeout_s=5,
        max_body_bytes=1 << 20,
        timeout_s=0.3,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(QueryError) as stopped:
        await a.query("SELECT count(*) FROM range(1000000000000) a, sys_invocation")
    assert stopped.value.status == 400 and "longer than 0.3 s" in stopped.value.message
    assert loop.time() - started < 10  # interrupted, not run to the end
    # The engine is free again: the next query answers.
    _, rows, _ = await a.query("SELECT count(*) AS n FROM sys_invocation")
    assert rows == [{"n": 2}]


async def test_a_replica_that_cannot_answer_is_passed_over(pair: Pair) -> None:
    """The first replica of partitions 2 and 3 is a node whose port is closed: the query asks
    the next one."""
    await pair.registry.join("gone", "", f"http://127.0.0.1:{free_port()}")
    a = SqlQueries(
        pair.store_a,
        pair.registry,
        Placement(lambda: frozenset({0, 1}), lambda p: ["gone", "b"]),
        partitions=PARTITIONS,
        node_id="a",
        scan_rows_max=1000,
        result_rows_max=1000,
        body_timeout_s=5,
        max_body_bytes=1 << 20,
        client=pair.client,
    )
    _, rows, _ = await a.query("SELECT partition FROM sys_invocation ORDER BY partition")
    assert rows == [{"partition": p} for p in range(PARTITIONS)]
