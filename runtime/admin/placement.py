"""The admin API's view of the cluster (DESIGN §8): ``GET /cluster`` (the whole placement, on any
node) and reads of partitions this node does not apply, which go to one of their replicas.

A cluster node applies only the partitions it is a replica of; its store may still hold rows of
a partition it applied earlier, but those are stale, so reads of such a partition are forwarded
(``runtime.peers``). ``GET /cluster`` gathers, from every node of the placement, what it applies
(position, epoch, leading) at the moment of the request: as fresh as one round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from aiohttp import web

from partition_processor.tables import KeyValueReader
from runtime.admin.listing import BadListing, PartitionPage, list_partition, parse_limit
from runtime.http_errors import error_response
from runtime.peers import FORWARDED_HEADER, PeerClient, PeerUnavailable
from runtime.placement import Placement

PARTITIONS_PATH = "/internal/partitions"
INVOCATIONS_PATH = "/internal/invocations"
# A node that does not answer ``GET /cluster``'s fan-out within this is shown as unreachable.
_FAN_OUT_TIMEOUT_S = 2.0

LocalView = dict[int, dict[str, int | bool]]


class Replicas(Protocol):
    """What this node applies (``runtime.worker.replicas.ReplicaWorkers``)."""

    @property
    def placement(self) -> Placement | None: ...

    def applies(self, partition: int) -> bool: ...

    def leading(self) -> list[int]: ...

    def local_view(self) -> LocalView: ...


class NotApplied(Exception):
    """No replica of a partition could answer (a 503 with Retry-After for the client)."""


_page_decoder = msgspec.json.Decoder(PartitionPage)


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

    def install(self, app: web.Application) -> None:
        app.router.add_get("/cluster", self._cluster)
        app.router.add_get(PARTITIONS_PATH, self._local)
        app.router.add_get(INVOCATIONS_PATH, self._partition_invocations)

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

    async def forward(self, request: web.Request, partition: int) -> web.Response | None:
        """The answer of a replica of ``partition`` to this GET, or None to answer here."""
        nodes = self._remote(partition)
        if nodes is None:
            return None
        assert self._peers is not None
        if request.headers.get(FORWARDED_HEADER):
            return self._unavailable(partition, "the placement is changing")
        try:
            answer = await self._peers.get_any(nodes, request.rel_url.raw_path, request.query)
        except PeerUnavailable as exc:
            return self._unavailable(partition, f"no replica answered ({exc})")
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type
        )

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
        query = {"partition": str(partition), "limit": str(limit), "budget": str(budget)}
        if status is not None:
            query["status"] = status
        if after is not None:
            query["after"] = after
        try:
            answer = await self._peers.get_any(nodes, INVOCATIONS_PATH, query)
        except PeerUnavailable as exc:
            raise NotApplied(f"partition {partition}: no replica answered ({exc})") from exc
        if answer.status != 200:
            raise NotApplied(f"partition {partition}: its replica answered HTTP {answer.status}")
        return _page_decoder.decode(answer.body)

    async def _partition_invocations(self, request: web.Request) -> web.Response:
        """Another node's listing reads one partition this node applies."""
        query = request.query
        try:
            partition = int(query.get("partition", ""))
            budget = int(query.get("budget", ""))
            limit = parse_limit(query.get("limit"))
        except (ValueError, BadListing) as exc:
            return error_response(400, f"bad partition listing query: {exc}")
        if not 0 <= partition < self._partitions:
            return error_response(400, f"partition must be in [0, {self._partitions})")
        if budget < 1:
            return error_response(400, "budget must be at least 1")
        if self._peers is not None and not self._replicas.applies(partition):
            return self._unavailable(partition, "the placement is changing")
        page = list_partition(
            self._store,
            partition,
            status=query.get("status"),
            limit=limit,
            after=query.get("after"),
            budget=budget,
        )
        return web.json_response(msgspec.to_builtins(page))

    async def _local(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"node": self._node_id, "partitions": _view_json(self._replicas.local_view())}
        )

    async def _cluster(self, request: web.Request) -> web.Response:
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
        return web.json_response(
            {
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
        )

    async def _view_of(self, node: str) -> LocalView | None:
        assert self._peers is not None
        try:
            answer = await asyncio.wait_for(
                self._peers.get(node, PARTITIONS_PATH, {}), _FAN_OUT_TIMEOUT_S
            )
        except (PeerUnavailable, TimeoutError):
            return None
        if answer.status != 200:
            return None
        try:
            body: Any = msgspec.json.decode(answer.body)
            return {int(p): view for p, view in body["partitions"].items()}
        except (msgspec.DecodeError, KeyError, ValueError, AttributeError):
            return None


def _view_json(view: LocalView) -> dict[str, dict[str, int | bool]]:
    return {str(p): v for p, v in view.items()}
