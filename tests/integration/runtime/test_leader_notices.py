"""Leader-change notices over the internal port: every other node is told (the sender itself
is not), a node that does not answer costs at most the notice timeout, and a notice for a
partition out of range is refused (a real server, a real metadata log, a real client)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from runtime.internal import InternalClient, InternalRoutes, InternalServer, PeerError
from runtime.leader_notices import (
    LEADER_CHANGED_PATH,
    NOTICE_TIMEOUT_S,
    LeaderChanged,
    LeaderNotices,
    leader_changed_route,
)
from runtime.log import LocalLog
from runtime.metadata import Registry
from runtime.supervisor import Supervisor
from sdk.ports import free_port

SECRET = b"the-cluster-secret-of-this-test"
PARTITIONS = 4


async def _serve(port: int, received: list[int]) -> web.AppRunner:
    routes = InternalRoutes()
    routes.add(LEADER_CHANGED_PATH, leader_changed_route(PARTITIONS, received.append))
    server = InternalServer(routes, SECRET, max_body_bytes=1 << 20, body_timeout_s=5)
    runner = web.AppRunner(server.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_every_other_node_is_told_and_a_silent_one_costs_a_bounded_wait(
    tmp_path: Path,
) -> None:
    metadata = LocalLog(tmp_path / "metadata", 1)
    await metadata.start()
    supervisor = Supervisor()
    registry = Registry(metadata)
    await registry.start(supervisor)
    b_port, c_port, own_port = free_port(), free_port(), free_port()
    # A socket that accepts connections (the kernel's backlog) and never answers: a frozen node.
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen()
    b: list[int] = []
    c: list[int] = []
    own: list[int] = []
    runners = [await _serve(b_port, b), await _serve(c_port, c), await _serve(own_port, own)]
    for node, port in [("a/1", own_port), ("b/1", b_port), ("c/1", c_port)]:
        await registry.join(node, "http://unused", f"http://127.0.0.1:{port}")
    await registry.join("d/1", "http://unused", f"http://127.0.0.1:{frozen.getsockname()[1]}")
    client = InternalClient(registry, SECRET, timeout_s=30)  # the notice's own bound applies
    notices = LeaderNotices(client, supervisor, "a/1", registry.nodes)
    try:
        started = time.monotonic()
        notices.announce(2, 7)
        for _ in range(1500):  # (15 s at most)
            if not notices._in_flight:
                break
            await asyncio.sleep(0.01)
        took = time.monotonic() - started
        assert (b, c, own) == ([2], [2], [])
        assert NOTICE_TIMEOUT_S <= took < NOTICE_TIMEOUT_S + 3, took
        body = msgspec.msgpack.encode(LeaderChanged(PARTITIONS, 8))
        with pytest.raises(PeerError) as refused:
            await client.post("b/1", LEADER_CHANGED_PATH, body)
        assert refused.value.status == 400 and b == [2]
    finally:
        await notices.close()
        await supervisor.shutdown()
        await metadata.close()
        frozen.close()
        for runner in runners:
            await runner.cleanup()
