"""Leader-change notices (DESIGN §8): a node that does not apply a partition never sees its new
leader's announcement, so the calls it holds for that partition would re-attach only at the next
re-attach interval. The new leader, once it applied its own announcement, tells every other node
over the internal port; a receiver wakes the calls waiting on that partition
(``PendingResponses.leader_changed``), which re-attach to the new leader at once.

Best effort: one short supervised task per change, one try per node with a short timeout, and a
bound on the notices in flight; a lost notice costs a waiting call the re-attach interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from runtime.internal import InternalClient, InternalHandler, PeerError, RejectedRequest
from runtime.supervisor import SupervisedTask, Supervisor

log = logging.getLogger(__name__)

LEADER_CHANGED_PATH = "/internal/leader-changed"
# A notice is worth something only within a few seconds (then the re-attach interval is near).
NOTICE_TIMEOUT_S = 2.0
# Changes announced at once are few (a failover moves a dead node's partitions); past this many
# notices in flight, a new one is dropped rather than piling up behind unreachable peers.
_MAX_IN_FLIGHT = 64


class LeaderChanged(msgspec.Struct, frozen=True):
    partition: int
    epoch: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LeaderChanged)


def leader_changed_route(partitions: int, receive: Callable[[int], None]) -> InternalHandler:
    """The internal route that takes another node's notice: ``receive(partition)``."""

    async def route(body: bytes) -> None:
        try:
            notice = _decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise RejectedRequest(400, f"not a leader-change notice: {exc}") from exc
        if not 0 <= notice.partition < partitions:
            raise RejectedRequest(400, f"partition must be in [0, {partitions})")
        receive(notice.partition)
        return None

    return route


class LeaderNotices:
    """Sends this node's new leaderships to the other nodes of the cluster."""

    def __init__(
        self,
        client: InternalClient,
        supervisor: Supervisor,
        node_id: str,
        nodes: Callable[[], list[str]],
    ) -> None:
        """``nodes``: the cluster's nodes now (the metadata's)."""
        self._client = client
        self._supervisor = supervisor
        self._node_id = node_id
        self._nodes = nodes
        self._in_flight: set[SupervisedTask] = set()

    def announce(self, partition: int, epoch: int) -> None:
        if len(self._in_flight) >= _MAX_IN_FLIGHT:
            log.info("leader-change notice of partition %d dropped: too many in flight", partition)
            return
        body = _encoder.encode(LeaderChanged(partition, epoch))
        others = [n for n in self._nodes() if n != self._node_id]
        if not others:
            return
        task = self._supervisor.spawn(
            "leader-notice", lambda: self._send(others, body), restart=False
        )
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, nodes: list[str], body: bytes) -> None:
        await asyncio.gather(*(self._send_to(node, body) for node in nodes))

    async def _send_to(self, node: str, body: bytes) -> None:
        try:
            await asyncio.wait_for(
                self._client.post(node, LEADER_CHANGED_PATH, body), NOTICE_TIMEOUT_S
            )
        except (PeerError, TimeoutError) as exc:
            # (A node that just died, or one of an earlier incarnation: its calls are gone.)
            log.debug("leader-change notice to %s not delivered: %s", node, exc)

    async def close(self) -> None:
        for task in list(self._in_flight):
            await task.stop()
        self._in_flight.clear()
        await self._client.close()
