"""``read_body_or_error``: the admin and internal APIs' body reading (``POST /query``, the
internal routes). A real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runtime.http_limits import read_body_or_error


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await read_body_or_error(request, 0.3, 16)
    if isinstance(body, web.Response):
        return body
    return web.Response(body=body)


async def _client() -> TestClient:  # type: ignore[type-arg]
    app = web.Application()
    app.router.add_post("/", _echo)
    client: TestClient = TestClient(TestServer(app, host="127.0.0.1"))  # type: ignore[type-arg]
    await client.start_server()
    return client


async def test_a_body_within_the_limit_is_read() -> None:
    client = await _client()
    try:
        response = await client.post("/", data=b"0123456789")
        assert response.status == 200 and await response.read() == b"0123456789"
    finally:
        await client.close()


async def test_an_oversized_body_is_413_with_a_json_error() -> None:
    client = await _client()
    try:
        response = await client.post("/", data=b"x" * 17)
        assert response.status == 413
        assert (await response.json())["code"] == 413
    finally:
        await client.close()


async def test_a_body_that_comes_too_slowly_is_408() -> None:
    async def dribble() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.sleep(1.0)
        yield b"b"

    client = await _client()
    try:
        response = await client.post("/", data=dribble())
        assert response.status == 408
        assert (await response.json())["code"] == 408
    finally:
        await client.close()
