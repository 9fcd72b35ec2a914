"""Stopping what a fixture started (a node, an endpoint's gRPC server): each stop bounded and
named, and every one run.

Register each stop on an ``AsyncExitStack`` as soon as the thing is started (before the steps
that may fail after it, such as registering a deployment): they run in reverse order even when
one of them fails or hangs, so a stop that raised never leaves the next one undone (a gRPC server
left running keeps calls open in this process; a node left running keeps its log's files). A
stop that does not end within ``STOP_TIMEOUT_S`` fails the test, saying which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import aiohttp
import pytest

from runtime.config import NodeConfig
from runtime.node import Node

# A node stops within its shutdown timeout (15 s by default) and a gRPC server at once; this
# leaves a loaded CI machine room, and fails well within pytest-timeout's limit (pyproject.toml).
STOP_TIMEOUT_S = 60.0


async def bounded(
    what: str, stop: Callable[[], Awaitable[object]], timeout_s: float = STOP_TIMEOUT_S
) -> None:
    """``await stop()``; fail the test naming ``what`` if it has not ended in ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            await stop()
    except TimeoutError:
        if not deadline.expired():
            raise  # the stop's own error, not this bound
        pytest.fail(f"teardown: {what} did not end within {timeout_s:g} s", pytrace=False)


async def start_node_with_endpoint(
    teardown: AsyncExitStack, config: NodeConfig, endpoint_port: int
) -> tuple[Node, aiohttp.ClientSession]:
    """Start a node whose stop is registered on ``teardown`` first, open a client session (closed
    by ``teardown`` too) and register the endpoint on 127.0.0.1:``endpoint_port`` (201)."""
    node = Node(config)
    teardown.push_async_callback(bounded, "the node's stop", node.stop)
    await node.start()
    session = await teardown.enter_async_context(aiohttp.ClientSession())
    uri = {"uri": f"http://127.0.0.1:{endpoint_port}"}
    async with session.post(f"http://{config.admin_bind}/deployments", json=uri) as response:
        assert response.status == 201, await response.text()
    return node, session
