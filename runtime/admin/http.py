"""Admin HTTP: deployments, services, invocation status, health (object state: ``state.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from partition_processor.commands import Purge, Terminate
from partition_processor.ids import (
    InvalidInvocationId,
    parse_partition_key,
    partition_of,
)
from partition_processor.journal import Failure, Input, JournalEntry, Success, command_name
from partition_processor.tables import KeyValueReader, read_journal, read_status
from runtime.admin.listing import BadListing, Cursor, parse_limit, walk_invocations
from runtime.admin.manage import Action, manage_invocation
from runtime.admin.placement import ClusterAdmin, NotApplied
from runtime.admin.state import ObjectState, value_json
from runtime.health import NodeHealth
from runtime.http_errors import error_response
from runtime.http_limits import BodyTimeout, BodyTooLarge, read_body, timed_out
from runtime.ingress.gateway import InvocationGateway
from runtime.ingress.http import health_response
from runtime.ingress.validation import InvalidRequest, check_json
from runtime.invoker.discovery import DiscoveryError
from runtime.limits import SizePolicy
from runtime.log import LogError
from runtime.metadata import Deployment, DeploymentConflict, Registry, ServiceInfo
from runtime.metrics import exposition
from runtime.security.headers import HeaderSeal
from runtime.snapshots.manager import SnapshotError, SnapshotInfo
from runtime.snapshots.repository import RepositoryError, SnapshotRef
from runtime.versions.check import Candidate, CheckReport, candidates_of
from runtime.versions.pinned import pinned_counts_of, pinned_pairs_of

Discover = Callable[[str], Awaitable[Deployment]]
_candidates_encoder = msgspec.msgpack.Encoder()
_candidates_decoder = msgspec.msgpack.Decoder(list[Candidate])
# The upgrade check of a discovered deployment (runtime.versions.check), bound to the node.
UpgradeCheck = Callable[[Deployment, list[Candidate]], Awaitable[CheckReport]]
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


def _service_json(service: ServiceInfo) -> dict[str, Any]:
    return {
        "name": service.name,
        "ty": service.service_type,
        "deployment_id": service.deployment_id,
        "revision": service.revision,
        "documentation": service.documentation,
        "metadata": service.metadata,
        "handlers": [
            {
                "name": h.name,
                "kind": h.kind,
                "retry_policy": msgspec.to_builtins(h.retry_policy),
                "documentation": h.documentation,
                "metadata": h.metadata,
                "input": msgspec.to_builtins(h.input),
                "output": msgspec.to_builtins(h.output),
            }
            for h in service.handlers.values()
        ],
    }


def _deployment_json(deployment: Deployment, pinned: int = 0) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "uri": deployment.uri,
        "services": [_service_json(s) for s in deployment.services],
        # Unfinished invocations that started here and stay here (README, Versions).
        "pinned_invocations": pinned,
    }


def _completion_json(entry: JournalEntry) -> Any:
    match entry.completion:
        case None:
            return None
        case Success(value=value):
            return {"value": value_json(value)}
        case Failure(code=code, message=message, metadata=metadata):
            failure: dict[str, Any] = {"code": code, "message": message}
            if metadata:
                failure["metadata"] = metadata
            return {"failure": failure}
        case other:
            return msgspec.to_builtins(other)


class AdminServer:
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

    async def _register(self, request: web.Request) -> web.Response:
        try:
            raw = await read_body(request, self._body_timeout_s, self._max_body_bytes)
            check_json(raw)
            body = msgspec.json.decode(raw)
        except InvalidRequest as exc:
            return error_response(exc.status, exc.message)
        except msgspec.DecodeError as exc:
            return error_response(400, f"the body is not valid JSON: {exc}")
        except BodyTimeout as exc:
            return timed_out(exc, source=None)
        except BodyTooLarge as exc:
            return error_response(413, str(exc))
        fields = body if isinstance(body, dict) else {}
        uri = fields.get("uri")
        flags = [fields.get(name, False) for name in ("force", "dry_run", "check")]
        if not isinstance(uri, str) or not uri or not all(isinstance(f, bool) for f in flags):
            return error_response(
                400,
                'expected {"uri": "http://HOST:PORT", "force": false, "dry_run": false, '
                '"check": false}',
            )
        force, dry_run, check = flags
        try:
            deployment = await self._discover(uri)
        except DiscoveryError as exc:
            return error_response(400, str(exc))
        if (dry_run or check) and self._upgrade_check is None:
            return error_response(409, "this node cannot check upgrades")
        if (dry_run or check) and self._upgrade_check is not None:
            # Replay the unfinished invocations of its services against it first (README,
            # Versions); a dry run stops here, a checked registration stops on a mismatch.
            try:
                services = [s.name for s in deployment.services]
                candidates = await self.replay_candidates(services)
            except NotApplied as exc:
                return self._unavailable(exc)
            report = await self._upgrade_check(deployment, candidates)
            if dry_run:
                return web.json_response(msgspec.to_builtins(report))
            if not report.compatible and not force:
                return error_response(
                    409,
                    f"{deployment.uri} would not replay every unfinished invocation of its "
                    'services (see "check"); register with "force": true to switch anyway',
                    extra={"check": msgspec.to_builtins(report)},
                )
        try:
            registered, created = await self._registry.register(deployment, force=force)
        except DeploymentConflict as exc:
            return error_response(409, str(exc))
        return web.json_response(_deployment_json(registered), status=201 if created else 200)

    def _pinned_here(self, partition: int, args: Mapping[str, str]) -> web.Response:
        return web.json_response({"pinned": pinned_pairs_of(self._store, partition)})

    async def pinned_pairs(self) -> list[tuple[str, str]]:
        """(invocation id, deployment id) of every unfinished pinned invocation of the cluster:
        each partition from this store, or from a replica when this node does not apply it
        (``NotApplied`` while none answers)."""
        pairs: list[tuple[str, str]] = []
        for partition in range(self._partitions):
            forwarded = await self._cluster.forward(partition, "pinned", {})
            if forwarded is None:
                pairs += pinned_pairs_of(self._store, partition)
                continue
            if forwarded.status != 200 or not isinstance(forwarded.body, bytes):
                why = f"HTTP {forwarded.status}"
                raise NotApplied(f"partition {partition}: no replica answered ({why})")
            body = msgspec.json.decode(forwarded.body)
            pairs += [(str(i), str(d)) for i, d in body["pinned"]]
        return pairs

    def _candidates_here(self, partition: int, args: Mapping[str, str]) -> web.Response:
        services = [s for s in args["services"].split(",") if s]
        body = _candidates_encoder.encode(candidates_of(self._store, partition, services))
        return web.Response(body=body, content_type="application/msgpack")

    async def replay_candidates(self, services: list[str]) -> list[Candidate]:
        """The unfinished invocations of ``services`` in the whole cluster, with their journals
        (the upgrade check): each partition from this store or from a replica."""
        found: list[Candidate] = []
        args = {"services": ",".join(services)}
        for partition in range(self._partitions):
            forwarded = await self._cluster.forward(partition, "replay-candidates", args)
            if forwarded is None:
                found += candidates_of(self._store, partition, services)
                continue
            if forwarded.status != 200 or not isinstance(forwarded.body, bytes):
                why = f"HTTP {forwarded.status}"
                raise NotApplied(f"partition {partition}: no replica answered ({why})")
            found += _candidates_decoder.decode(forwarded.body)
        return found

    def _unavailable(self, exc: NotApplied) -> web.Response:
        return error_response(
            503, str(exc), headers={"Retry-After": str(self._health_of.retry_after_s)}
        )

    async def _deployments(self, request: web.Request) -> web.Response:
        try:
            pinned = await pinned_counts_of(self.pinned_pairs)
        except NotApplied as exc:
            return self._unavailable(exc)
        return web.json_response(
            {
                "deployments": [
                    _deployment_json(d, pinned[d.id]) for d in self._registry.deployments()
                ]
            }
        )

    async def _deployment(self, request: web.Request) -> web.Response:
        deployment = self._registry.deployment(request.match_info["id"])
        if deployment is None:
            return error_response(404, f"deployment {request.match_info['id']!r} not found")
        try:
            pinned = (await pinned_counts_of(self.pinned_pairs))[deployment.id]
        except NotApplied as exc:
            return self._unavailable(exc)
        return web.json_response(_deployment_json(deployment, pinned))

    async def _services(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"services": [_service_json(s) for s in self._registry.services()]}
        )

    async def _service(self, request: web.Request) -> web.Response:
        service = self._registry.service(request.match_info["service"])
        if service is None:
            return error_response(404, f"service {request.match_info['service']!r} not found")
        return web.json_response(_service_json(service))

    async def _invocations(self, request: web.Request) -> web.Response:
        """One page of invocations (``?status=``, ``?limit=``, ``?cursor=`` from ``next``)."""
        try:
            limit = parse_limit(request.query.get("limit"))
            raw_cursor = request.query.get("cursor")
            cursor = Cursor.parse(raw_cursor, self._partitions) if raw_cursor else None
        except BadListing as exc:
            return error_response(400, str(exc))
        try:
            rows, following = await walk_invocations(
                self._cluster.page,
                self._partitions,
                status=request.query.get("status"),
                limit=limit,
                cursor=cursor,
            )
        except NotApplied as exc:
            # (Pages before this one stay valid: the client retries this page's cursor.)
            return error_response(
                503, str(exc), headers={"Retry-After": str(self._health_of.retry_after_s)}
            )
        return web.json_response(
            {"invocations": rows, "next": str(following) if following is not None else None}
        )

    async def _cancel(self, request: web.Request) -> web.Response:
        return await self._manage(request, "cancel")

    async def _kill(self, request: web.Request) -> web.Response:
        return await self._manage(request, "kill")

    async def _purge(self, request: web.Request) -> web.Response:
        return await self._manage(request, "purge")

    async def _manage(self, request: web.Request, action: Action) -> web.Response:
        return await manage_invocation(
            self._gateway, request.match_info["id"], action, self._health_of.retry_after_s
        )

    async def _delete(self, request: web.Request) -> web.Response:
        """Restate's older ``DELETE /invocations/{id}?mode=cancel|kill|purge`` (default cancel):
        202 once the command is in the log, whatever it then finds."""
        invocation_id = request.match_info["id"]
        mode = request.query.get("mode", "cancel").lower()
        if mode not in ("cancel", "kill", "purge"):
            return error_response(400, f"mode must be cancel, kill or purge, got {mode!r}")
        try:
            parse_partition_key(invocation_id)
        except InvalidInvocationId as exc:
            return error_response(400, str(exc))
        command: Terminate | Purge = Purge(invocation_id)
        if mode == "cancel":
            command = Terminate(invocation_id, "cancel")
        elif mode == "kill":
            command = Terminate(invocation_id, "kill")
        await self._gateway.submit(command)
        return web.Response(status=202)

    async def _invocation(self, request: web.Request) -> web.Response:
        invocation_id = request.match_info["id"]
        try:
            partition = partition_of(parse_partition_key(invocation_id), self._partitions)
        except InvalidInvocationId as exc:
            return error_response(400, str(exc))
        args = {"id": invocation_id}
        if (forwarded := await self._cluster.forward(partition, "invocation", args)) is not None:
            return forwarded
        return self._invocation_here(partition, args)

    def _invocation_here(self, partition: int, args: Mapping[str, str]) -> web.Response:
        invocation_id = args["id"]
        status = read_status(self._store, partition, invocation_id)
        if status is None:
            return error_response(404, f"invocation {invocation_id!r} not found")
        journal = read_journal(self._store, partition, invocation_id)
        failure = status.last_failure
        headers = (
            journal[0].command.headers if journal and isinstance(journal[0].command, Input) else []
        )
        if self._seal is not None:
            headers = self._seal.redact(headers)
        result: Any = None
        if isinstance(status.result, Success):
            result = {"value": value_json(status.result.value)}
        elif isinstance(status.result, Failure):
            result = {"failure": {"code": status.result.code, "message": status.result.message}}
        return web.json_response(
            {
                "id": invocation_id,
                "target": status.target.describe(),
                "service": status.target.service,
                "handler": status.target.handler,
                "key": status.target.key,
                "status": status.phase,
                "attempt": status.attempt,
                # Where its attempts run (README, Versions); gone: removed with force.
                "deployment_id": status.deployment_id,
                "deployment_gone": status.deployment_id is not None
                and self._registry.deployment(status.deployment_id) is None,
                "idempotency_key": status.idempotency_key,
                # The request's headers; secret ones (README, Security) as "<redacted>".
                "headers": [[name, value] for name, value in headers],
                # Ingress requests waiting for the result (bounded: --max-attached-requests).
                "attached_requests": len(status.sinks),
                "created_ms": status.created_ms,
                "modified_ms": status.modified_ms,
                "last_failure": msgspec.to_builtins(failure) if failure else None,
                "result": result,
                "journal": [
                    {
                        "index": index,
                        "command": command_name(entry.command),
                        "completed": entry.completion is not None,
                        "completion": _completion_json(entry),
                    }
                    for index, entry in enumerate(journal)
                ],
            }
        )
