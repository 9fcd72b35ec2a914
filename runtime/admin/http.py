"""Admin HTTP: the server, its middleware and route registration, health, metrics, snapshots.

The deployment and service routes are in ``deployments.py``, the invocation routes in
``invocations.py``, object state in ``state.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from partition_processor.tables import KeyValueReader
from runtime.admin.deployments import DeploymentRoutes, Discover, UpgradeCheck
from runtime.admin.invocations import InvocationRoutes
from runtime.admin.placement import ClusterAdmin
from runtime.admin.state import ObjectState
from runtime.health import NodeHealth
from runtime.http_errors import error_response
from runtime.ingress.gateway import InvocationGateway
from runtime.ingress.http import health_response
from runtime.ingress.validation import InvalidRequest, check_json
from runtime.limits import SizePolicy
from runtime.log import LogError
from runtime.metadata import Registry
from runtime.metrics import exposition
from runtime.security.headers import HeaderSeal
from runtime.snapshots.manager import SnapshotError, SnapshotInfo
from runtime.snapshots.repository import RepositoryError, SnapshotRef

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def log_unavailable(retry_after_s: int) -> Middleware:
    """Middleware: an admin request the log did not take (a broker outage: README "Broker
    outages") is a 503 with Retry-After and the reason, never a 500; every 503 has Retry-After."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        retry = {"Retry-After": str(retry_after_s)}
        try:
            response = await handler(request)
        except LogError as exc:
            return error_response(
                503, f"the log did not take the request, retry: {exc}", headers=retry
            )
        if response.status == 503 and not response.prepared:
            response.headers.setdefault("Retry-After", retry["Retry-After"])
        return response

    return middleware


class Snapshots(Protocol):
    """The node's snapshot operations (``LookupError``: none configured / not led here)."""

    async def create_snapshots(self, partition: int | None) -> list[SnapshotInfo]: ...

    async def list_snapshots(self, partition: int | None) -> list[SnapshotRef]: ...


class AdminServer(DeploymentRoutes, InvocationRoutes):
    """The admin API: registers every route; the deployment and invocation routes live in
    ``deployments.py`` and ``invocations.py`` (mixins), the object state in ``state.py``."""

    def __init__(
        self,
        registry: Registry,
        store: KeyValueReader,
        partitions: int,
        *,
        discover: Discover,
        gateway: InvocationGateway,
        health: NodeHealth,
        node_id: str,
        cluster: ClusterAdmin,
        limits: SizePolicy,
        body_timeout_s: float,
        max_body_bytes: int,
        snapshots: Snapshots | None = None,
        authenticate: Middleware | None = None,
        seal: HeaderSeal | None = None,
        before_metrics: Callable[[], Awaitable[None]] | None = None,
        upgrade_check: UpgradeCheck | None = None,
    ) -> None:
        """``max_body_bytes`` (``NodeConfig.admin_max_body_bytes``): admin bodies are small (a
        deployment URI); the server takes at least a gRPC message's limit. ``internal_url``:
        this node's advertised internal address (a cluster node; ``GET /cluster`` shows it)."""
        self._limits = limits
        self._max_body_bytes = max(max_body_bytes, limits.message_bytes)
        self._body_timeout_s = body_timeout_s
        self._snapshots = snapshots
        self._registry = registry
        self._cluster = cluster
        self._node_id = node_id
        self._store = store
        self._partitions = partitions
        self._discover = discover
        self._gateway = gateway
        self._health_of = health
        self._seal = seal
        self._before_metrics = before_metrics
        self._upgrade_check = upgrade_check
        # Authentication first: a request without the token learns nothing else.
        middlewares = [authenticate] if authenticate else []
        self.app = web.Application(
            middlewares=[*middlewares, log_unavailable(health.retry_after_s)]
        )
        router = self.app.router
        router.add_get("/health", self._health)
        cluster.install(self.app)
        # What a node that does not apply a partition asks one of its replicas for.
        cluster.add_read("invocation", self._invocation_here)
        cluster.add_read("pinned", self._pinned_here)
        cluster.add_read("replay-candidates", self._candidates_here)
        # The object state routes (GET and POST); ``state.patch_state`` for in-process callers.
        self.state = ObjectState(
            registry,
            store,
            partitions,
            gateway=gateway,
            cluster=cluster,
            limits=limits,
            body_timeout_s=body_timeout_s,
            max_body_bytes=self._max_body_bytes,
            retry_after_s=health.retry_after_s,
        )
        self.state.install(self.app)
        router.add_get("/metrics", self._metrics)
        router.add_post("/snapshots", self._create_snapshots)
        router.add_get("/snapshots", self._list_snapshots)
        router.add_post("/deployments", self._register)
        router.add_get("/deployments", self._deployments)
        router.add_get("/deployments/{id}", self._deployment)
        router.add_get("/services", self._services)
        router.add_get("/services/{service}", self._service)
        router.add_get("/invocations", self._invocations)
        router.add_get("/invocations/{id}", self._invocation)
        router.add_patch("/invocations/{id}/cancel", self._cancel)
        router.add_patch("/invocations/{id}/kill", self._kill)
        router.add_patch("/invocations/{id}/purge", self._purge)
        router.add_delete("/invocations/{id}", self._delete)

    async def _health(self, request: web.Request) -> web.Response:
        return health_response(self._health_of)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._before_metrics is not None:
            await self._before_metrics()  # the gauges read at scrape time
        return web.Response(body=exposition(), content_type="text/plain")

    def _snapshot_partition(self, value: Any) -> int | None:
        """A partition number from a body or query (``ValueError`` with the reason if bad)."""
        if value is None:
            return None
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"partition must be an integer, got {value!r}")
        if not 0 <= value < self._partitions:
            raise ValueError(f"partition {value} not in [0, {self._partitions})")
        return value

    async def _create_snapshots(self, request: web.Request) -> web.Response:
        """Snapshot one partition (``{"partition": P}``) or every partition this node leads."""
        if self._snapshots is None:
            return error_response(409, "no snapshot repository is configured")
        raw = await request.read()
        try:
            check_json(raw)  # (depth first: a deeply nested body is refused before decoding)
        except InvalidRequest as exc:
            return error_response(exc.status, exc.message)
        body = msgspec.json.decode(raw) if raw.strip() else {}
        if not isinstance(body, dict) or set(body) - {"partition"}:
            return error_response(400, 'expected {} or {"partition": P}')
        try:
            partition = self._snapshot_partition(body.get("partition"))
        except ValueError as exc:
            return error_response(400, str(exc))
        try:
            taken = await self._snapshots.create_snapshots(partition)
        except LookupError as exc:
            return error_response(409, str(exc.args[0]))
        except (RepositoryError, SnapshotError) as exc:
            return error_response(503, f"snapshot failed: {exc}")
        return web.json_response(
            {"snapshots": [msgspec.to_builtins(info) for info in taken]}, status=201
        )

    async def _list_snapshots(self, request: web.Request) -> web.Response:
        if self._snapshots is None:
            return error_response(409, "no snapshot repository is configured")
        try:
            partition = self._snapshot_partition(request.query.get("partition"))
        except ValueError as exc:
            return error_response(400, str(exc))
        try:
            refs = await self._snapshots.list_snapshots(partition)
        except LookupError as exc:
            return error_response(409, str(exc.args[0]))
        except RepositoryError as exc:
            return error_response(503, f"cannot list snapshots: {exc}")
        return web.json_response({"snapshots": [msgspec.to_builtins(ref) for ref in refs]})
