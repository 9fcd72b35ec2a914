"""The admin API's view of the cluster (DESIGN §8): ``GET /cluster`` (the whole placement, on any
node) and reads of partitions this node does not apply, which go to one of their replicas.

A cluster node applies only the partitions it is a replica of; its store may still hold rows of
a partition it applied earlier, but those are stale, so reads of such a partition are forwarded
(``runtime.peers``) to the replica's internal port, where ``install_internal`` serves them: a
state or invocation read (answered with its HTTP status, body and content type, so that a 404 is
the caller's 404), a listing page, and the node's view. ``GET /cluster`` gathers, from every node
of the placement, what it applies (position, epoch, leading) at the moment of the request: as
fresh as one round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec
from aiohttp import web

from partition_processor.tables import KeyValueReader
from runtime.admin.listing import BadListing, PartitionPage, list_partition, parse_limit
from runtime.http_errors import error_response
from runtime.internal import InternalRoutes, RejectedRequest
from runtime.peers import PeerClient, PeerUnavailable
from runtime.placement import Placement

READ_PATH = "/internal/read"
PARTITIONS_PATH = "/internal/partitions"
INVOCATIONS_PATH = "/internal/invocations"
# A node that does not answer ``GET /cluster``'s fan-out within this is shown as unreachable.
_FAN_OUT_TIMEOUT_S = 2.0

LocalView = dict[int, dict[str, int | bool]]
# An admin read answered from this node's store: (partition, the read's arguments) -> response.
LocalRead = Callable[[int, Mapping[str, str]], web.Response]


class ForwardedRead(msgspec.Struct, frozen=True):
    """An admin read (``read``: a name ``ClusterAdmin.add_read`` gave) of one partition."""

    partition: int
    read: str
    args: dict[str, str]


class ForwardedAnswer(msgspec.Struct, frozen=True):
    """The replica's HTTP answer to a ``ForwardedRead``, passed on to the caller as it is."""

    status: int
    body: bytes
    content_type: str


class ListingQuery(msgspec.Struct, frozen=True):
    """One partition's listing page (``runtime.admin.listing.list_partition``)."""

    partition: int
    limit: int
    budget: int
    status: str | None = None
    after: str | None = None


class Replicas(Protocol):
    """What this node applies (``runtime.worker.replicas.ReplicaWorkers``)."""

    @property
    def placement(self) -> Placement | None: ...

    def applies(self, partition: int) -> bool: ...

    def leading(self) -> list[int]: ...

    def local_view(self) -> LocalView: ...


class NotApplied(Exception):
    """No replica of a partition could answer (a 503 with Retry-After for the client)."""


_encoder = msgspec.msgpack.Encoder()
_read_decoder = msgspec.msgpack.Decoder(ForwardedRead)
_answer_decoder = msgspec.msgpack.Decoder(ForwardedAnswer)
_query_decoder = msgspec.msgpack.Decoder(ListingQuery)
_page_decoder = msgspec.msgpack.Decoder(PartitionPage)


class ClusterAdmin:
    def __init__(
        self,
        *,
        node_id: str,
        partitions: int,
        replication: int,
        store: KeyValueReader,
        replicas: Replicas,
        peers: PeerClient | None,
        retry_after_s: int,
        internal_url: Callable[[], str | None] = lambda: None,
        nodes: Callable[[], list[str]] = list,
    ) -> None:
        """``peers`` None: a single node, which applies every partition itself.
        ``internal_url``: this node's advertised internal address; ``nodes``: the cluster's
        nodes in the metadata (both shown by ``GET /cluster``)."""
        self._internal_url = internal_url
        self._nodes = nodes
        self._node_id = node_id
        self._partitions = partitions
        self._replication = replication
        self._store = store
        self._replicas = replicas
        self._peers = peers
        self._retry_after_s = retry_after_s
        self._reads: dict[str, LocalRead] = {}

    def install(self, app: web.Application) -> None:
        app.router.add_get("/cluster", self._cluster)

    def install_internal(self, routes: InternalRoutes) -> None:
        """The routes other nodes' forwarded reads and ``GET /cluster`` use (internal port)."""
        routes.add(READ_PATH, self._serve_read)
        routes.add(PARTITIONS_PATH, self._local)
        routes.add(INVOCATIONS_PATH, self._partition_invocations)

    def add_read(self, name: str, local: LocalRead) -> None:
        """``local`` answers the read ``name`` from this node's store (see ``forward``)."""
        self._reads[name] = local

    def _remote(self, partition: int) -> list[str] | None:
        """The replicas to ask for ``partition`` (leader first); None: answer here."""
        if self._peers is None or self._replicas.applies(partition):
            return None
        placement = self._replicas.placement
        if placement is None or partition >= len(placement.replicas):
            return []
        return [n for n in placement.replicas[partition] if n != self._node_id]

    def _unavailable(self, partition: int, why: str) -> web.Response:
        return error_response(
            503,
            f"partition {partition} is not applied by this node and {why}; retry",
            headers={"Retry-After": str(self._retry_after_s)},
        )

    async def forward(
        self, partition: int, read: str, args: Mapping[str, str]
    ) -> web.Response | None:
        """A replica's answer to the read ``read`` of ``partition``, or None to answer here."""
        nodes = self._remote(partition)
        if nodes is None:
            return None
        assert self._peers is not None
        request = _encoder.encode(ForwardedRead(partition, read, dict(args)))
        try:
            answer = _answer_decoder.decode(await self._peers.post_any(nodes, READ_PATH, request))
        except PeerUnavailable as exc:
            return self._unavailable(partition, f"no replica answered ({exc})")
        except msgspec.DecodeError as exc:
            return self._unavailable(partition, f"its replica's answer is unreadable ({exc})")
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type
        )

    def _applied_here(self, partition: int) -> None:
        """Refuse a forwarded request for a partition this node does not apply (any longer):
        503, so that the asking node tries the next replica."""
        if not 0 <= partition < self._partitions:
            raise RejectedRequest(400, f"partition must be in [0, {self._partitions})")
        if self._peers is not None and not self._replicas.applies(partition):
            raise RejectedRequest(503, f"partition {partition} is not applied by this node")

    async def _serve_read(self, body: bytes) -> bytes:
        """Another node's forwarded read of a partition this node applies."""
        try:
            read = _read_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise RejectedRequest(400, f"not a forwarded read: {exc}") from exc
        local = self._reads.get(read.read)
        if local is None:
            raise RejectedRequest(400, f"unknown read {read.read!r}")
        self._applied_here(read.partition)
        try:
            response = local(read.partition, read.args)
        except KeyError as exc:
            raise RejectedRequest(400, f"read {read.read!r} needs the argument {exc}") from exc
        assert isinstance(response.body, bytes)  # (the admin API's answers are JSON bodies)
        answer = ForwardedAnswer(response.status, response.body, response.content_type)
        return _encoder.encode(answer)

    async def page(
        self, partition: int, status: str | None, limit: int, after: str | None, budget: int
    ) -> PartitionPage:
        """One partition's listing page, from this store or from a replica (``NotApplied``)."""
        nodes = self._remote(partition)
        if nodes is None:
            return list_partition(
                self._store, partition, status=status, limit=limit, after=after, budget=budget
            )
        assert self._peers is not None
        query = ListingQuery(partition, limit, budget, status, after)
        try:
            answer = await self._peers.post_any(nodes, INVOCATIONS_PATH, _encoder.encode(query))
            return _page_decoder.decode(answer)
        except PeerUnavailable as exc:
            raise NotApplied(f"partition {partition}: no replica answered ({exc})") from exc
        except msgspec.DecodeError as exc:
            raise NotApplied(f"partition {partition}: unreadable page ({exc})") from exc

    async def _partition_invocations(self, body: bytes) -> bytes:
        """Another node's listing reads one partition this node applies."""
        try:
            query = _query_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise RejectedRequest(400, f"not a partition listing query: {exc}") from exc
        try:
            limit = parse_limit(str(query.limit))
        except BadListing as exc:
            raise RejectedRequest(400, f"bad partition listing query: {exc}") from exc
        if query.budget < 1:
            raise RejectedRequest(400, "budget must be at least 1")
        self._applied_here(query.partition)
        page = list_partition(
            self._store,
            query.partition,
            status=query.status,
            limit=limit,
            after=query.after,
            budget=query.budget,
        )
        return _encoder.encode(page)

    async def _local(self, body: bytes) -> bytes:
        return msgspec.json.encode(
            {"node": self._node_id, "partitions": _view_json(self._replicas.local_view())}
        )

    async def read(self, partition: int, read: str, args: Mapping[str, str]) -> web.Response:
        """The answer to the read ``read`` of ``partition``: from a replica, or from this
        node's store when it applies the partition (the web console's reads)."""
        forwarded = await self.forward(partition, read, args)
        return forwarded if forwarded is not None else self._reads[read](partition, args)

    async def _cluster(self, request: web.Request) -> web.Response:
        return web.json_response(await self.cluster_view())

    async def cluster_view(self) -> dict[str, Any]:
        """The whole placement: partition -> leader, standbys, epoch, applied per replica."""
        local = self._replicas.local_view()
        placement = self._replicas.placement
        if self._peers is None or placement is None:
            replicas = [[self._node_id] if p in local else [] for p in range(self._partitions)]
            placement = Placement(0, replicas)
        nodes = sorted({n for rs in placement.replicas for n in rs} - {self._node_id})
        views: dict[str, LocalView] = {self._node_id: local}
        unreachable: list[str] = []
        answers = await asyncio.gather(*(self._view_of(node) for node in nodes))
        for node, view in zip(nodes, answers, strict=True):
            if view is None:
                unreachable.append(node)
            else:
                views[node] = view
        partitions = []
        for p, rs in enumerate(placement.replicas):
            reports = {n: views[n][p] for n in rs if n in views and p in views[n]}
            leader = rs[0] if rs else None
            epochs = [int(r["epoch"]) for r in reports.values()]
            epoch = reports[leader]["epoch"] if leader in reports else max(epochs, default=None)
            partitions.append(
                {
                    "partition": p,
                    "leader": leader,
                    "standbys": rs[1:],
                    "epoch": epoch,
                    "applied": {n: (reports[n]["applied"] if n in reports else None) for n in rs},
                }
            )
        return {
            "node": self._node_id,
            "internal_address": self._internal_url(),
            "nodes": self._nodes(),
            "leading": self._replicas.leading(),
            "applying": sorted(local),
            "replication": self._replication if self._peers is not None else 1,
            "generation": placement.generation,
            "partitions": partitions,
            "unreachable": unreachable,
        }

    async def _view_of(self, node: str) -> LocalView | None:
        assert self._peers is not None
        try:
            answer = await asyncio.wait_for(
                self._peers.post(node, PARTITIONS_PATH, b""), _FAN_OUT_TIMEOUT_S
            )
        except (PeerUnavailable, TimeoutError):
            return None
        try:
            body: Any = msgspec.json.decode(answer)
            return {int(p): view for p, view in body["partitions"].items()}
        except (msgspec.DecodeError, KeyError, ValueError, AttributeError):
            return None


def _view_json(view: LocalView) -> dict[str, dict[str, int | bool]]:
    return {str(p): v for p, v in view.items()}
