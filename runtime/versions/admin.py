"""Admin routes of versions (README, Versions): remove a deployment, move invocations."""

from __future__ import annotations

import msgspec
from aiohttp import web

from partition_processor.commands import DeploymentGone, MoveDeployment
from partition_processor.ids import InvalidInvocationId, parse_partition_key
from partition_processor.journal import Failure, Result
from partition_processor.tables import KeyValueReader
from runtime.admin.placement import NotApplied
from runtime.http_errors import error_response
from runtime.ingress.gateway import InvocationGateway, ResultUnavailable
from runtime.ingress.validation import InvalidRequest, check_json
from runtime.metadata import Registry
from runtime.versions.pinned import PinnedPairs, pinned_ids_of


class _Move(msgspec.Struct, forbid_unknown_fields=True):
    deployment: str


class VersionsAdmin:
    def __init__(
        self,
        registry: Registry,
        store: KeyValueReader,
        partitions: int,
        gateway: InvocationGateway,
        pinned: PinnedPairs,
    ) -> None:
        """``pinned``: the cluster's pinned invocations (``AdminServer.pinned_pairs``)."""
        self._pinned = pinned
        self._registry = registry
        self._store = store
        self._partitions = partitions
        self._gateway = gateway

    def install(self, app: web.Application) -> None:
        app.router.add_delete("/deployments/{id}", self._remove)
        app.router.add_patch("/deployments/{id}/invocations", self._move_all)
        app.router.add_patch("/invocations/{id}", self._move)

    async def _remove(self, request: web.Request) -> web.Response:
        """``DELETE /deployments/{id}[?force=true]``: 409 while invocations are pinned to it."""
        deployment_id = request.match_info["id"]
        force = request.query.get("force", "false").lower()
        if force not in ("true", "false"):
            return error_response(400, f"force must be true or false, got {force!r}")
        if self._registry.deployment(deployment_id) is None:
            return error_response(404, f"deployment {deployment_id!r} not found")
        try:
            pinned_ids = await pinned_ids_of(self._pinned, deployment_id)
        except NotApplied as exc:
            return error_response(503, str(exc), headers={"Retry-After": "1"})
        pinned = len(pinned_ids)
        if pinned and force != "true":
            return error_response(
                409,
                f"{pinned} unfinished invocation(s) are pinned to {deployment_id}: drain it "
                "(cairn deployments drain), move them, or remove with force=true (they then "
                "fail with 573, deployment gone)",
                extra={"pinned_invocations": pinned},
            )
        await self._registry.remove(deployment_id)
        # Removed first: an invocation pinned after this scan fails at its next attempt (the
        # invoker finds its deployment gone); those found here fail now, each in its log.
        failed = 0
        for invocation_id in pinned_ids:
            outcome = await self._fail_gone(invocation_id, deployment_id)
            failed += not isinstance(outcome, Failure)
        return web.json_response({"id": deployment_id, "failed_invocations": failed})

    async def _target(self, request: web.Request) -> str | web.Response:
        """The deployment a move names (an error response when bad or unknown)."""
        raw = await request.read()
        try:
            check_json(raw)  # (depth first: a deeply nested body is refused before decoding)
        except InvalidRequest as exc:
            return error_response(exc.status, exc.message)
        try:
            body = msgspec.json.decode(raw, type=_Move)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return error_response(400, f'expected {{"deployment": "dp_..."}}: {exc}')
        if self._registry.deployment(body.deployment) is None:
            return error_response(404, f"deployment {body.deployment!r} not found")
        return body.deployment

    async def _fail_gone(self, invocation_id: str, deployment_id: str) -> Result:
        return await self._gateway.manage(
            lambda sink: DeploymentGone(invocation_id, deployment_id, sink)
        )

    async def _move_one(self, invocation_id: str, deployment_id: str) -> Result:
        return await self._gateway.manage(
            lambda sink: MoveDeployment(invocation_id, deployment_id, sink)
        )

    async def _move(self, request: web.Request) -> web.Response:
        """``PATCH /invocations/{id}`` ``{"deployment": ID}``: its next attempt runs there."""
        invocation_id = request.match_info["id"]
        try:
            parse_partition_key(invocation_id)
        except InvalidInvocationId as exc:
            return error_response(400, str(exc))
        target = await self._target(request)
        if isinstance(target, web.Response):
            return target
        try:
            outcome = await self._move_one(invocation_id, target)
        except InvalidRequest as exc:
            return error_response(exc.status, exc.message, headers=exc.headers)
        except ResultUnavailable as exc:
            return error_response(503, str(exc))
        if isinstance(outcome, Failure):
            return error_response(outcome.code, outcome.message)
        return web.json_response({"id": invocation_id, "deployment": target})

    async def _move_all(self, request: web.Request) -> web.Response:
        """``PATCH /deployments/{id}/invocations`` ``{"deployment": TO}``: every invocation
        pinned to ``id`` moves to ``TO`` (each through its partition's log)."""
        source = request.match_info["id"]
        target = await self._target(request)
        if isinstance(target, web.Response):
            return target
        moved = []
        try:
            pinned_ids = await pinned_ids_of(self._pinned, source)
        except NotApplied as exc:
            return error_response(503, str(exc), headers={"Retry-After": "1"})
        for invocation_id in pinned_ids:
            outcome = await self._move_one(invocation_id, target)
            if not isinstance(outcome, Failure):  # (one completed meanwhile stays where it was)
                moved.append(invocation_id)
        return web.json_response({"moved": moved, "deployment": target})
