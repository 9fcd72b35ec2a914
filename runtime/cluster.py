"""Cluster membership (DESIGN §8): which partitions this node leads, and delivering ingress
responses to the node that holds the waiting request.

Every node applies every partition (as a follower), so any node can answer reads and take over
a partition at once. Which node *leads* a partition comes from a Kafka consumer group over the
log topic: the group's assignment is the ownership, and a member that dies loses its partitions
after the session timeout. The log still arbitrates: a new owner announces a higher epoch, and
records of the old one (a zombie that has not noticed yet) are dropped on apply.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from partition_processor.actions import RespondToIngress
from runtime.log import LogError
from runtime.metadata import Registry
from runtime.supervisor import SupervisedTask, Supervisor

log = logging.getLogger(__name__)

OwnershipChange = Callable[[set[int], set[int]], Awaitable[None]]

RESPONSES_PATH = "/internal/responses"
_DELIVERY_TIMEOUT_S = 10.0
_ADDRESS_WAIT_S = 5.0


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


class ResponseDelivery:
    """Sends a response to the node whose ingress holds the request (its admin API)."""

    def __init__(
        self,
        registry: Registry,
        supervisor: Supervisor,
        *,
        authorization: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._registry = registry
        self._supervisor = supervisor
        # The other nodes' admin token (a cluster shares one) and TLS trust, when they use them.
        self._headers = {"Authorization": authorization} if authorization else {}
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._http: aiohttp.ClientSession | None = None
        self._pending: set[SupervisedTask] = set()

    def deliver(self, action: RespondToIngress) -> None:
        # One short task per response: logged and counted if it fails, never restarted (the
        # client can attach), stopped with the node.
        task = self._supervisor.spawn(
            "response-delivery", lambda: self._deliver(action), restart=False
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, action: RespondToIngress) -> None:
        # A node publishes its address before it takes requests, but this node may not have
        # read that metadata record yet: wait for it a little.
        deadline = asyncio.get_running_loop().time() + _ADDRESS_WAIT_S
        while (url := self._registry.node_admin_url(action.sink.node)) is None:
            if asyncio.get_running_loop().time() > deadline:
                log.debug("no address for %s: its request is gone", action.sink.node)
                return  # e.g. a node of an earlier incarnation: its request died with it
            await asyncio.sleep(0.05)
        await self._post(url, action)

    async def _post(self, url: str, action: RespondToIngress) -> None:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=_DELIVERY_TIMEOUT_S)
            self._http = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._http.post(
                url + RESPONSES_PATH,
                data=_encoder.encode(action),
                headers=self._headers,
                ssl=self._ssl,
            ) as r:
                if r.status != 204:
                    log.warning("response delivery to %s: HTTP %d", url, r.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The waiting client can attach to the invocation; nothing is lost but this reply.
            log.warning("response delivery to %s failed: %r", url, exc)

    async def close(self) -> None:
        for task in list(self._pending):
            await task.stop()
        self._pending.clear()
        if self._http is not None:
            await self._http.close()
