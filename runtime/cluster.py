"""Cluster membership (DESIGN §8): where each partition is placed, and delivering ingress
responses to the node that holds the waiting request (over the internal port).

The nodes are the members of a Kafka consumer group over the log topic. Its leader computes the
placement (``runtime.placement``: partition -> leader and standbys) with a custom, sticky
assignor, and hands the WHOLE placement to every member in the assignment's user data; the Kafka
partitions a member is assigned are the ones it leads. A member that dies leaves the group after
the session timeout and its partitions are re-placed. The log still arbitrates leadership: a new
leader announces a higher epoch, and records of the old one (a zombie that has not noticed yet)
are dropped on apply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError

from partition_processor.actions import RespondToIngress
from runtime.crashpoints import crash_point
from runtime.internal import InternalClient, InternalHandler, PeerError, RejectedRequest
from runtime.log import LogError
from runtime.placement import Placement, place
from runtime.supervisor import SupervisedTask, Supervisor

log = logging.getLogger(__name__)

PlacementChange = Callable[[Placement], Awaitable[None]]

RESPONSES_PATH = "/internal/responses"
# A delivery is tried this many times, waiting 100 ms, 200 ms, ... (at most 2 s) in between:
# about 3 s in all, longer than a peer's restart of its HTTP server takes, shorter than the
# waiting call's own fallback (re-attaching) needs to matter.
_DELIVERY_ATTEMPTS = 6
_DELIVERY_BACKOFF_S = 0.1
_DELIVERY_BACKOFF_MAX_S = 2.0


class MemberInfo(msgspec.Struct, frozen=True):
    """What a member tells the group's leader when it joins (the JoinGroup user data)."""

    node_id: str
    # Applied position per partition (-1: no worker for it here): failover prefers caught-up.
    applied: list[int]
    # The newest placement it saw: a group leader that just joined learns the current one.
    placement: Placement | None = None


_member_encoder = msgspec.msgpack.Encoder()
_member_decoder = msgspec.msgpack.Decoder(MemberInfo)
_placement_decoder = msgspec.msgpack.Decoder(Placement)


class PlacementAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """aiokafka's assignment strategy ``cairn-placement-v1``: the sticky replica placement.

    aiokafka calls ``metadata`` at each join, ``assign`` on the group's leader, and
    ``on_assignment`` on every member before its rebalance listener runs.
    """

    name = "cairn-placement-v1"
    version = 1

    def __init__(
        self, node_id: str, *, partitions: int, replication: int, applied: Callable[[], list[int]]
    ) -> None:
        self._node_id = node_id
        self._partitions = partitions
        self._replication = replication
        self._applied = applied
        self.placement: Placement | None = None

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        info = MemberInfo(self._node_id, self._applied(), self.placement)
        return ConsumerProtocolMemberMetadata(
            self.version, sorted(topics), _member_encoder.encode(info)
        )

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        infos: dict[str, MemberInfo] = {}
        for member_id, metadata in members.items():
            try:
                infos[member_id] = _member_decoder.decode(metadata.user_data)
            except msgspec.DecodeError:
                # Not one of ours (or a future format): placed as a node with no state.
                log.warning("cluster: member %s sent unreadable metadata", member_id)
                infos[member_id] = MemberInfo(member_id, [])
        seen = [i.placement for i in infos.values() if i.placement is not None]
        previous = max(seen, key=lambda p: p.generation, default=None)
        placement = place(
            {info.node_id: info.applied for info in infos.values()},
            previous,
            partitions=self._partitions,
            replication=self._replication,
        )
        topics = sorted({t for m in members.values() for t in m.subscription})
        user_data = _member_encoder.encode(placement)
        return {
            member_id: ConsumerProtocolMemberAssignment(
                self.version,
                [(topic, sorted(placement.led_by(info.node_id))) for topic in topics],
                user_data,
            )
            for member_id, info in infos.items()
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        try:
            self.placement = _placement_decoder.decode(assignment.user_data)
        except msgspec.DecodeError:
            log.error("cluster: unreadable placement in the group's assignment; ignored")


class GroupOwnership:
    """Membership in the consumer group ``group`` over ``topic``; reports each new placement.

    The group's eager protocol revokes every partition before each rebalance: leadership is not
    released then, only handed over (``on_revoked``: lead on, but do not claim back if deposed,
    as a member that fell out of the group would), and each new placement is compared with the
    last one by the node, so a partition whose leader stays keeps its epoch and its attempts.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        on_change: PlacementChange,
        assignor: PlacementAssignor,
        *,
        on_revoked: Callable[[], None] = lambda: None,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self._topic = topic
        self._on_change = on_change
        self._on_revoked = on_revoked
        self.assignor = assignor
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 6),
            partition_assignment_strategy=(assignor,),
        )
        self._task: SupervisedTask | None = None

    async def start(self, supervisor: Supervisor) -> None:
        self._consumer.subscribe([self._topic], listener=_Listener(self))
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise LogError(f"cannot join the cluster's group on {self._topic}: {exc!r}") from exc
        self._task = supervisor.spawn("cluster-ownership", self._poll)

    async def stop(self) -> None:
        if self._task is not None:
            await self._task.stop()
        await self._consumer.stop()

    async def _poll(self) -> None:
        """Keep the membership alive. Every partition is paused: nothing is fetched here."""
        while True:
            await self._consumer.getmany(timeout_ms=1000)

    async def _assigned(self, partitions: set[int]) -> None:
        self._consumer.pause(*(TopicPartition(self._topic, p) for p in partitions))
        placement = self.assignor.placement
        if placement is None:
            log.error("cluster: assigned %s without a placement", sorted(partitions))
            return
        await self._on_change(placement)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ownership: GroupOwnership) -> None:
        self._ownership = ownership

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._ownership._on_revoked()  # led on until the next placement (sticky; the log fences)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._ownership._assigned({tp.partition for tp in assigned})


_encoder = msgspec.msgpack.Encoder()
# The route takes one response (what nodes before batching send) or an array of them.
_decoder = msgspec.msgpack.Decoder(RespondToIngress | list[RespondToIngress])
# A delivery request carries up to this many bytes of responses (at least one response, however
# large: the receiving server bounds a body by a whole entry's worth, ``limits.message_bytes``).
_BATCH_BYTES_MAX = 1 << 20


def decode_responses(body: bytes) -> list[RespondToIngress]:
    decoded = _decoder.decode(body)
    return decoded if isinstance(decoded, list) else [decoded]


def response_route(receive: Callable[[RespondToIngress], None]) -> InternalHandler:
    """The internal route that takes the results another node delivers for requests held here
    (a msgpack array of ``RespondToIngress``, or a single one)."""

    async def route(body: bytes) -> None:
        try:
            actions = decode_responses(body)
        except msgspec.DecodeError as exc:
            raise RejectedRequest(400, f"not a response: {exc}") from exc
        for action in actions:
            receive(action)
        return None

    return route


class ResponseDelivery:
    """Sends responses to the node whose ingress holds the request (its internal port).

    Batched per peer: one sender task per peer node posts every response queued for it in one
    request, and the responses that arrive while that request is in flight go in the next one.
    Under load a request then carries many results (one HTTP exchange per result cost the leader
    and the holder more CPU than applying the request did); alone, a response leaves at once.
    A failed request is retried with backoff, a bounded number of times; past that, or when the
    holding node is unknown (an earlier incarnation), its responses are dropped: the waiting
    ingress calls re-attach by invocation id (``runtime.ingress.reattach``), so a result is never
    only here.
    """

    def __init__(self, client: InternalClient, supervisor: Supervisor) -> None:
        self._client = client
        self._supervisor = supervisor
        # Per peer node: its responses not yet sent (encoded once), and its sender task.
        self._queues: dict[str, list[bytes]] = {}
        self._senders: dict[str, SupervisedTask] = {}
        self._pending: set[SupervisedTask] = set()

    def deliver(self, action: RespondToIngress) -> None:
        if action.receipt is None and not action.refused:
            # (Tests: the leader dies with a committed result that nobody has delivered.)
            crash_point("delivery.result")
        node = action.sink.node
        self._queues.setdefault(node, []).append(_encoder.encode(action))
        if node in self._senders:
            return  # its sender takes it with the next request
        # One sender per peer while it has responses: logged and counted if it fails, never
        # restarted (it retries itself), stopped with the node.
        task = self._supervisor.spawn(
            "response-delivery", lambda: self._send_to(node), restart=False
        )
        self._senders[node] = task
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _take(self, node: str) -> list[bytes]:
        """The next batch for ``node`` (at most ``_BATCH_BYTES_MAX``, at least one response);
        empty when none is queued, and then this sender is done (synchronously, so a response
        queued after this spawns a new one)."""
        queue = self._queues.get(node)
        if not queue:
            self._queues.pop(node, None)
            self._senders.pop(node, None)
            return []
        size, count = len(queue[0]), 1
        while count < len(queue) and size + len(queue[count]) <= _BATCH_BYTES_MAX:
            size += len(queue[count])
            count += 1
        batch = queue[:count]
        del queue[:count]
        return batch

    async def _send_to(self, node: str) -> None:
        try:
            while batch := self._take(node):
                # The responses were encoded once, on arrival: the batch is an array of them.
                await self._post(node, _encoder.encode([msgspec.Raw(item) for item in batch]))
        finally:
            # Cancelled or failed: unregistered, so the next response for this node starts a
            # new sender (which sends what is still queued). No other sender for this node can
            # exist yet: a normal end unregistered in ``_take``, with no await since.
            self._senders.pop(node, None)
            if not self._queues.get(node):
                self._queues.pop(node, None)

    async def _post(self, node: str, body: bytes) -> None:
        backoff_s = _DELIVERY_BACKOFF_S
        for attempt in range(1, _DELIVERY_ATTEMPTS + 1):
            try:
                await self._client.post(node, RESPONSES_PATH, body)
                return
            except PeerError as exc:
                if not exc.retryable or attempt == _DELIVERY_ATTEMPTS:
                    # An unknown node is an earlier incarnation's: its request died with it.
                    gone = exc.status is None and not exc.retryable
                    log.log(
                        logging.DEBUG if gone else logging.WARNING,
                        "response delivery to %s dropped: %s",
                        node,
                        exc,
                    )
                    return
                log.info("response delivery to %s failed (try %d): %s", node, attempt, exc)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, _DELIVERY_BACKOFF_MAX_S)

    async def close(self) -> None:
        for task in list(self._pending):
            await task.stop()
        self._pending.clear()
        self._senders.clear()
        self._queues.clear()
        await self._client.close()
