"""A result for a request held by another node is delivered to that node's internal port, and a
failed delivery is retried with backoff (README "A cluster"): a real metadata registry on a
LocalLog, the real internal client and server over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from partition_processor.actions import RespondToIngress
from partition_processor.commands import IngressSink
from partition_processor.journal import Success
from runtime.cluster import RESPONSES_PATH, ResponseDelivery, response_route
from runtime.internal import InternalClient, InternalRoutes, InternalServer
from runtime.log import LocalLog
from runtime.metadata import Registry
from runtime.supervisor import Supervisor
from tests.e2e.harness import free_port

SECRET = b"s" * 32
HOLDER = "node-b/1"


async def _serve(port: int, secret: bytes, received: list[RespondToIngress]) -> web.AppRunner:
    """Node b's internal port: takes the responses delivered to it."""
    routes = InternalRoutes()
    routes.add(RESPONSES_PATH, response_route(received.append))
    server = InternalServer(routes, secret, max_body_bytes=1 << 20, body_timeout_s=5)
    runner = web.AppRunner(server.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture
async def delivery(tmp_path: Path) -> AsyncIterator[tuple[ResponseDelivery, int]]:
    """Node a's delivery, with node b (not listening yet) known at a free port."""
    metadata = LocalLog(tmp_path / "metadata", 1)
    await metadata.start()
    supervisor = Supervisor()
    registry = Registry(metadata)
    await registry.start(supervisor)
    port = free_port()
    await registry.join(HOLDER, "http://127.0.0.1:1", f"http://127.0.0.1:{port}")
    sender = ResponseDelivery(InternalClient(registry, SECRET, timeout_s=2), supervisor)
    try:
        yield sender, port
    finally:
        await sender.close()
        await registry.stop()
        await metadata.close()


def _tries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "response delivery to" in r.getMessage()]


async def _until(condition: object, timeout_s: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_failed_delivery_is_retried_with_backoff_until_the_node_answers(
    delivery: tuple[ResponseDelivery, int], caplog: pytest.LogCaptureFixture
) -> None:
    sender, port = delivery
    caplog.set_level(logging.INFO, logger="runtime.cluster")
    action = RespondToIngress(IngressSink(HOLDER, "req-1"), "inv_1", Success(b'"hi"'))
    sender.deliver(action)  # node b is not listening: refused, retried
    await _until(lambda: len(_tries(caplog)) >= 3)
    received: list[RespondToIngress] = []
    runner = await _serve(port, SECRET, received)
    try:
        await _until(lambda: received)
        assert received == [action]
        tries = _tries(caplog)
        assert [f"(try {n})" in r.getMessage() for n, r in enumerate(tries[:3], 1)] == [True] * 3
        # Backoff: each wait at least the one before it doubled (0.1 s, 0.2 s, ...).
        gaps = [b.created - a.created for a, b in zip(tries, tries[1:3], strict=False)]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.19, gaps
        assert not [r for r in tries if "dropped" in r.getMessage()]
    finally:
        await runner.cleanup()


async def test_a_delivery_refused_for_its_secret_is_dropped_at_once(
    delivery: tuple[ResponseDelivery, int], caplog: pytest.LogCaptureFixture
) -> None:
    """A 4xx stays a 4xx: no retries (the caller re-attaches by invocation id instead)."""
    sender, port = delivery
    caplog.set_level(logging.INFO, logger="runtime.cluster")
    received: list[RespondToIngress] = []
    runner = await _serve(port, b"another secret of the node b!", received)
    try:
        sender.deliver(RespondToIngress(IngressSink(HOLDER, "req-2"), "inv_2", Success(b"1")))
        await _until(lambda: _tries(caplog))
        await asyncio.sleep(0.5)  # a retry would come after 0.1 s
        [dropped] = _tries(caplog)
        assert dropped.levelno == logging.WARNING and "HTTP 401" in dropped.getMessage()
        assert "dropped" in dropped.getMessage() and received == []
    finally:
        await runner.cleanup()
