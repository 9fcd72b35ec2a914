"""Cluster membership (DESIGN §8): which partitions this node leads, and delivering ingress
responses to the node that holds the waiting request (over the internal port).

Every node applies every partition (as a follower), so any node can answer reads and take over
a partition at once. Which node *leads* a partition comes from a Kafka consumer group over the
log topic: the group's assignment is the ownership, and a member that dies loses its partitions
after the session timeout. The log still arbitrates: a new owner announces a higher epoch, and
records of the old one (a zombie that has not noticed yet) are dropped on apply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from partition_processor.actions import RespondToIngress
from runtime.crashpoints import crash_point
from runtime.internal import InternalClient, InternalHandler, PeerError, RejectedRequest
from runtime.log import LogError
from runtime.supervisor import SupervisedTask, Supervisor

log = logging.getLogger(__name__)

OwnershipChange = Callable[[set[int], set[int]], Awaitable[None]]

RESPONSES_PATH = "/internal/responses"
# A delivery is tried this many times, waiting 100 ms, 200 ms, ... (at most 2 s) in between:
# about 3 s in all, longer than a peer's restart of its HTTP server takes, shorter than the
# waiting call's own fallback (re-attaching) needs to matter.
_DELIVERY_ATTEMPTS = 6
_DELIVERY_BACKOFF_S = 0.1
_DELIVERY_BACKOFF_MAX_S = 2.0


class GroupOwnership:
    """Membership in the consumer group ``group`` over ``topic``; reports (gained, lost)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        on_change: OwnershipChange,
        *,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self._topic = topic
        self._on_change = on_change
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 6),
        )
        self._owned: set[int] = set()
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
        gained = partitions - self._owned
        self._owned |= partitions
        self._consumer.pause(*(TopicPartition(self._topic, p) for p in partitions))
        log.info("cluster: assigned partitions %s (leading once announced)", sorted(self._owned))
        await self._on_change(gained, set())

    async def _revoked(self, partitions: set[int]) -> None:
        lost = partitions & self._owned
        self._owned -= partitions
        await self._on_change(set(), lost)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ownership: GroupOwnership) -> None:
        self._ownership = ownership

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._ownership._revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._ownership._assigned({tp.partition for tp in assigned})


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RespondToIngress)


def decode_response(body: bytes) -> RespondToIngress:
    return _decoder.decode(body)


def response_route(receive: Callable[[RespondToIngress], None]) -> InternalHandler:
    """The internal route that takes a result another node delivers for a request held here."""

    async def route(body: bytes) -> None:
        try:
            action = decode_response(body)
        except msgspec.DecodeError as exc:
            raise RejectedRequest(400, f"not a response: {exc}") from exc
        receive(action)
        return None

    return route


class ResponseDelivery:
    """Sends a response to the node whose ingress holds the request (its internal port).

    A failed delivery is retried with backoff, a bounded number of times; past that, or when the
    holding node is unknown (an earlier incarnation), it is dropped: the waiting ingress call
    re-attaches by invocation id (``runtime.ingress.reattach``), so a result is never only here.
    """

    def __init__(self, client: InternalClient, supervisor: Supervisor) -> None:
        self._client = client
        self._supervisor = supervisor
        self._pending: set[SupervisedTask] = set()

    def deliver(self, action: RespondToIngress) -> None:
        if action.receipt is None and not action.refused:
            # (Tests: the leader dies with a committed result that nobody has delivered.)
            crash_point("delivery.result")
        # One short task per response: logged and counted if it fails, never restarted (it
        # retries itself), stopped with the node.
        task = self._supervisor.spawn(
            "response-delivery", lambda: self._deliver(action), restart=False
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, action: RespondToIngress) -> None:
        body = _encoder.encode(action)
        backoff_s = _DELIVERY_BACKOFF_S
        for attempt in range(1, _DELIVERY_ATTEMPTS + 1):
            try:
                await self._client.post(action.sink.node, RESPONSES_PATH, body)
                return
            except PeerError as exc:
                node = action.sink.node
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
        await self._client.close()
