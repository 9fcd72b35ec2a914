"""Admin HTTP: the deployment and service routes, and the cluster-wide reads of pinned
invocations and replay candidates they need (a mixin of ``AdminServer``, which registers them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from partition_processor.tables import KeyValueReader
from runtime.admin.placement import ClusterAdmin, NotApplied
from runtime.health import NodeHealth
from runtime.http_errors import error_response
from runtime.http_limits import BodyTimeout, BodyTooLarge, read_body, timed_out
from runtime.ingress.validation import InvalidRequest, check_json
from runtime.invoker.discovery import DiscoveryError
from runtime.metadata import Deployment, DeploymentConflict, Registry, ServiceInfo
from runtime.versions.check import Candidate, CheckReport, candidates_of
from runtime.versions.pinned import pinned_counts_of, pinned_pairs_of

Discover = Callable[[str], Awaitable[Deployment]]
_candidates_encoder = msgspec.msgpack.Encoder()
_candidates_decoder = msgspec.msgpack.Decoder(list[Candidate])
# The upgrade check of a discovered deployment (runtime.versions.check), bound to the node.
UpgradeCheck = Callable[[Deployment, list[Candidate]], Awaitable[CheckReport]]


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
        # The endpoint reads batched stream messages (its manifest says so; README, Endpoints).
        "message_batches": deployment.message_batches,
        # The endpoint serves many attempts on one stream (README, Endpoints).
        "multiplex": deployment.multiplex,
        # Unfinished invocations that started here and stay here (README, Versions).
        "pinned_invocations": pinned,
    }


class DeploymentRoutes:
    """``/deployments`` and ``/services`` of ``AdminServer`` (which sets these attributes)."""

    _registry: Registry
    _store: KeyValueReader
    _partitions: int
    _cluster: ClusterAdmin
    _health_of: NodeHealth
    _discover: Discover
    _upgrade_check: UpgradeCheck | None
    _body_timeout_s: float
    _max_body_bytes: int

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
