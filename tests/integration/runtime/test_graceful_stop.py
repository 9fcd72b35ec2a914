"""A stopping node refuses new requests with 503 + ``Retry-After`` and says why on both health
endpoints; ``stop`` is idempotent and finishes within the shutdown timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from runtime.config import NodeConfig
from runtime.node import Node
from sdk.ports import free_port


async def test_a_stopping_node_refuses_new_requests_and_stops_in_time(tmp_path: Path) -> None:
    config = NodeConfig(
        data_dir=tmp_path,
        ingress_bind=f"127.0.0.1:{free_port()}",
        admin_bind=f"127.0.0.1:{free_port()}",
        partitions=2,
        shutdown_timeout_ms=5_000,
    )
    node = Node(config)
    await node.start()
    ingress, admin = f"http://{config.ingress_bind}", f"http://{config.admin_bind}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{ingress}/restate/health") as response:
                assert response.status == 200
            # The first thing ``stop`` does; set alone here to look at the node in this state.
            node.health.phase = "stopping"
            async with http.post(f"{ingress}/Greeter/greet", json="Ada") as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"
                assert response.headers["x-restate-error-source"] == "ingress"
                assert await response.json() == {
                    "code": 503,
                    "message": "the node is shutting down",
                    "source": "ingress",
                }
            health = ((f"{ingress}/restate/health", "ingress"), (f"{admin}/health", None))
            for url, source in health:
                async with http.get(url) as response:
                    assert response.status == 503
                    assert response.headers["Retry-After"] == "1"
                    body = await response.json()
                    assert body["code"] == 503
                    assert body["message"] == "the node is shutting down"
                    assert body.get("source") == source
    finally:
        started = time.monotonic()
        await asyncio.wait_for(node.stop(), 5)
        await node.stop()  # idempotent
    assert time.monotonic() - started < 5


def _config(data_dir: Path, admin_port: int | None = None) -> NodeConfig:
    return NodeConfig(
        data_dir=data_dir,
        ingress_bind=f"127.0.0.1:{free_port()}",
        admin_bind=f"127.0.0.1:{admin_port or free_port()}",
        partitions=2,
    )


async def test_a_stop_whose_caller_gave_up_still_closes_the_ports_log_and_store(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    node = Node(config)
    await node.start()
    stopping = asyncio.ensure_future(node.stop())
    await asyncio.sleep(0)  # the stop is under way, at its first wait
    stopping.cancel()  # as a wait_for whose time is up, or a test's teardown cut short
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await node.stop()  # waits for that same stop to end
    # The same ports and data dir (its store and log) are free: a second node starts on them.
    again = Node(config)
    await again.start()
    await again.stop()


async def test_stop_undoes_a_start_that_failed(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = _config(tmp_path, admin_port=taken.getsockname()[1])
        node = Node(config)
        with pytest.raises(OSError):
            await node.start()  # the admin port is taken: after the log and store opened
        await node.stop()
    again = Node(config)
    await again.start()
    await again.stop()
