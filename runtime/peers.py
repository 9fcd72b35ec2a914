"""Node-to-node reads in a cluster (DESIGN §8): an admin read of a partition this node does not
apply is answered by one of its replicas, and ``GET /cluster`` gathers every node's view.

All of it goes through ``PeerClient``, one small class, so that it can move onto the private
internal port (``--internal-bind``, with the cluster secret) in one place. Today it talks to a
peer's admin API, at the address the peer published in the metadata topic.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping

import aiohttp

from runtime.metadata import Registry

log = logging.getLogger(__name__)

# A forwarded request carries this header; a node that gets one for a partition it does not
# apply answers 503 rather than forwarding again (placements can briefly disagree).
FORWARDED_HEADER = "x-cairn-forwarded"
_TIMEOUT_S = 10.0


class PeerUnavailable(Exception):
    """No replica answered (unknown address, refused, timed out)."""


class PeerResponse:
    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type


class PeerClient:
    def __init__(
        self,
        registry: Registry,
        *,
        timeout_s: float = _TIMEOUT_S,
        authorization: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``authorization``: the admin token the peers' admin APIs want (the cluster shares
        one); ``ssl_context``: how to trust their TLS certificates, when they use TLS."""
        self._registry = registry
        self._timeout_s = timeout_s
        self._headers = {FORWARDED_HEADER: "1"}
        if authorization:
            self._headers["Authorization"] = authorization
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._http: aiohttp.ClientSession | None = None

    async def get(self, node_id: str, path: str, query: Mapping[str, str]) -> PeerResponse:
        """``GET path?query`` on ``node_id`` (``PeerUnavailable`` if it cannot be asked)."""
        url = self._registry.node_admin_url(node_id)
        if url is None:
            raise PeerUnavailable(f"no address known for {node_id}")
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        try:
            async with self._http.get(
                url + path, params=dict(query), headers=self._headers, ssl=self._ssl
            ) as response:
                body = await response.read()
                return PeerResponse(response.status, body, response.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(f"{node_id} at {url}: {exc!r}") from exc

    async def get_any(
        self, node_ids: list[str], path: str, query: Mapping[str, str]
    ) -> PeerResponse:
        """The first answer of ``node_ids`` in order that is not a 503 (a replica that is not
        ready, or no longer applies the partition): the leader first, then the standbys."""
        problems: list[str] = []
        for node_id in node_ids:
            try:
                response = await self.get(node_id, path, query)
            except PeerUnavailable as exc:
                problems.append(str(exc))
                continue
            if response.status != 503:
                return response
            problems.append(f"{node_id}: HTTP 503")
        raise PeerUnavailable("; ".join(problems) or "no replica")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
