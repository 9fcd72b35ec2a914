"""Result delivery over the internal port: retried with backoff while the holding node's
internal server is not up yet, never retried when the secret is wrong (a real server, a real
metadata log, a real client)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from aiohttp import web

from partition_processor.actions import RespondToIngress
from partition_processor.commands import IngressSink
from partition_processor.journal import Success
from runtime.cluster import RESPONSES_PATH, ResponseDelivery, response_route
from runtime.internal import InternalClient, InternalRoutes, InternalServer
from runtime.log import LocalLog
from runtime.metadata import Registry
from runtime.supervisor import Supervisor
from sdk.ports import free_port

SECRET = b"the-cluster-secret-of-this-test"


async def _serve(port: int, received: list[RespondToIngress], secret: bytes) -> web.AppRunner:
    routes = InternalRoutes()
    routes.add(RESPONSES_PATH, response_route(received.append))
    server = InternalServer(routes, secret, max_body_bytes=1 << 20, body_timeout_s=5)
    runner = web.AppRunner(server.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _delivery(tmp_path: Path, port: int) -> tuple[ResponseDelivery, Supervisor, LocalLog]:
    metadata = LocalLog(tmp_path / "metadata", 1)
    await metadata.start()
    supervisor = Supervisor()
    registry = Registry(metadata)
    await registry.start(supervisor)
    await registry.join("node-b/1", "http://127.0.0.1:1", f"http://127.0.0.1:{port}")
    client = InternalClient(registry, SECRET, timeout_s=2)
    return ResponseDelivery(client, supervisor), supervisor, metadata


ACTION = RespondToIngress(IngressSink("node-b/1", "request-1"), "inv_x", Success(b"1"))


async def test_a_delivery_is_retried_until_the_holder_listens(tmp_path: Path) -> None:
    port = free_port()
    delivery, supervisor, metadata = await _delivery(tmp_path, port)
    received: list[RespondToIngress] = []
    runner: web.AppRunner | None = None
    try:
        delivery.deliver(ACTION)  # nobody listens yet: the first tries fail
        await asyncio.sleep(0.5)
        assert received == []
        runner = await _serve(port, received, SECRET)
        for _ in range(500):
            if received:
                break
            await asyncio.sleep(0.01)
        assert received == [ACTION]
    finally:
        await delivery.close()
        await supervisor.shutdown()
        await metadata.close()
        if runner is not None:
            await runner.cleanup()


async def test_a_delivery_with_the_wrong_secret_is_refused_and_not_retried(
    tmp_path: Path,
) -> None:
    port = free_port()
    delivery, supervisor, metadata = await _delivery(tmp_path, port)
    received: list[RespondToIngress] = []
    runner = await _serve(port, received, b"another-secret-of-this-cluster")
    try:
        delivery.deliver(ACTION)
        # It ends after the one refused try (retries would take 3 s: 100 ms doubling, 6 tries).
        for _ in range(150):
            if not delivery._pending:
                break
            await asyncio.sleep(0.01)
        assert not delivery._pending and received == []
    finally:
        await delivery.close()
        await supervisor.shutdown()
        await metadata.close()
        await runner.cleanup()


async def test_responses_queued_during_a_request_go_in_one_batched_request(
    tmp_path: Path,
) -> None:
    """One HTTP request per peer carries the responses that queued while the previous one was
    in flight (in order); a single response (what a node before batching sends) is still taken.
    """
    port = free_port()
    delivery, supervisor, metadata = await _delivery(tmp_path, port)
    received: list[RespondToIngress] = []
    requests: list[int] = []

    def count(action: RespondToIngress) -> None:
        received.append(action)

    routes = InternalRoutes()
    route = response_route(count)

    async def counting_route(body: bytes) -> bytes | None:
        requests.append(len(received))
        return await route(body)

    routes.add(RESPONSES_PATH, counting_route)
    server = InternalServer(routes, SECRET, max_body_bytes=1 << 20, body_timeout_s=5)
    runner = web.AppRunner(server.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    actions = [
        RespondToIngress(IngressSink("node-b/1", f"request-{i}"), f"inv_{i}", Success(b"%d" % i))
        for i in range(50)
    ]
    try:
        for action in actions:  # all queued before the first request is sent
            delivery.deliver(action)
        for _ in range(500):
            if len(received) == len(actions):
                break
            await asyncio.sleep(0.01)
        assert received == actions
        assert len(requests) < len(actions)  # batched: fewer requests than responses
        # The sender ends once its queue is empty: after the last request's answer, which may
        # still be on its way when the receiver has counted every response.
        for _ in range(500):
            if not delivery._pending:
                break
            await asyncio.sleep(0.01)
        assert not delivery._pending
        delivery.deliver(ACTION)  # ... and a later response starts a new one
        for _ in range(500):
            if received[-1] == ACTION:
                break
            await asyncio.sleep(0.01)
        assert received[-1] == ACTION
        # A single (unbatched) response body is still accepted.
        assert await route(_single_body(ACTION)) is None
        assert received[-1] == ACTION and len(received) == len(actions) + 2
    finally:
        await delivery.close()
        await supervisor.shutdown()
        await metadata.close()
        await runner.cleanup()


def _single_body(action: RespondToIngress) -> bytes:
    return msgspec.msgpack.encode(action)
