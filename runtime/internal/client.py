"""The internal client: node-to-node requests to a peer's internal port, by node id."""

from __future__ import annotations

import asyncio

import aiohttp

from runtime.internal.server import authorization
from runtime.metadata import Registry

# A node publishes its address before it takes requests, but this node may not have read that
# metadata record yet: a lookup waits this long for it.
_ADDRESS_WAIT_S = 5.0


class PeerError(Exception):
    """The peer could not be asked: unknown address, unreachable, or it answered an error.

    ``retryable``: another try may succeed (unreachable, timed out, 5xx); not for an unknown
    node (gone with an earlier incarnation) or a 4xx (a wrong secret stays wrong).
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class InternalClient:
    """Posts to ``/internal/...`` routes of other nodes, with the cluster secret."""

    def __init__(self, registry: Registry, secret: bytes, *, timeout_s: float) -> None:
        self._registry = registry
        self._headers = {"authorization": authorization(secret)}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None

    async def address(self, node_id: str) -> str:
        """The peer's advertised internal URL (waits briefly for its metadata record)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ADDRESS_WAIT_S
        while (url := self._registry.node_internal_url(node_id)) is None:
            if loop.time() > deadline:
                raise PeerError(f"no internal address is known for node {node_id}", retryable=False)
            await asyncio.sleep(0.05)
        return url

    async def post(self, node_id: str, path: str, body: bytes) -> bytes:
        """POST ``body`` to ``path`` on node ``node_id``; the answer's body (2xx only)."""
        url = await self.address(node_id)
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._http.post(url + path, data=body, headers=self._headers) as response:
                answer = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerError(f"{url}{path}: {exc!r}", retryable=True) from exc
        if not 200 <= status < 300:
            detail = answer[:500].decode("utf-8", "replace")
            raise PeerError(
                f"{url}{path}: HTTP {status} {detail}", retryable=status >= 500, status=status
            )
        return answer

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
