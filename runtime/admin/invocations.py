"""Admin HTTP: the invocation routes (listing, status and journal, cancel, kill, purge,
delete), a mixin of ``AdminServer``, which registers them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

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
from runtime.admin.state import value_json
from runtime.health import NodeHealth
from runtime.http_errors import error_response
from runtime.ingress.gateway import InvocationGateway
from runtime.metadata import Registry
from runtime.security.headers import HeaderSeal


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


class InvocationRoutes:
    """``/invocations`` of ``AdminServer`` (which sets these attributes)."""

    _registry: Registry
    _store: KeyValueReader
    _partitions: int
    _cluster: ClusterAdmin
    _health_of: NodeHealth
    _gateway: InvocationGateway
    _seal: HeaderSeal | None

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
