"""Node-to-node reads in a cluster (DESIGN §8): an admin read of a partition this node does not
apply is answered by one of its replicas, and ``GET /cluster`` gathers every node's view.

They go over the private internal port, with the cluster secret (``runtime.internal``), like
every other node-to-node request: the admin API takes none of them.
"""

from __future__ import annotations

from runtime.internal import InternalClient, PeerError

# A forwarded read may scan a partition's rows on the replica: longer than a result delivery.
READ_TIMEOUT_S = 10.0


class PeerUnavailable(Exception):
    """No replica answered (unknown address, refused, timed out, or it refused the request)."""


class PeerClient:
    """Asks other nodes' internal routes; ``post_any`` tries a partition's replicas in turn."""

    def __init__(self, client: InternalClient) -> None:
        self._client = client

    async def post(self, node_id: str, path: str, body: bytes) -> bytes:
        """``POST path`` on ``node_id``'s internal port (``PeerUnavailable`` if it cannot)."""
        try:
            return await self._client.post(node_id, path, body)
        except PeerError as exc:
            raise PeerUnavailable(f"{node_id}: {exc}") from exc

    async def post_any(self, node_ids: list[str], path: str, body: bytes) -> bytes:
        """The answer of the first of ``node_ids`` (the leader first, then the standbys) that
        answers: one that is not ready, or no longer applies the partition, refuses with 503
        (placements can briefly disagree), and the next one is asked."""
        problems: list[str] = []
        for node_id in node_ids:
            try:
                return await self.post(node_id, path, body)
            except PeerUnavailable as exc:
                problems.append(str(exc))
        raise PeerUnavailable("; ".join(problems) or "no replica")

    async def close(self) -> None:
        await self._client.close()
