"""The ingress HTTP server: Restate's request paths, headers and error codes (DESIGN §7).

``POST /{Service}/{handler}``, ``POST /{Object}/{key}/{handler}``, either with ``/send`` appended
for a one-way call (202). Errors are JSON ``{"code": ..., "message": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec
from aiohttp import web

from partition_processor.commands import Target
from partition_processor.ids import (
    InvalidAwakeableId,
    InvalidInvocationId,
    parse_partition_key,
    workflow_run_id,
)
from partition_processor.journal import Failure, Success
from partition_processor.state_machine.on_attach import TOO_MANY_ATTACHED
from runtime.http_limits import (
    BodyTimeout,
    BodyTooLarge,
    RequestLimit,
    read_body,
    refusal,
    timed_out,
)
from runtime.ingress.durations import InvalidDuration, parse_duration_ms
from runtime.ingress.gateway import InvocationGateway
from runtime.metadata import HandlerInfo, Registry, ServiceInfo

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
IDEMPOTENCY_HEADER = "idempotency-key"
ID_HEADER = "x-restate-id"
# Headers forwarded to the handler as ``ctx.request().headers``.
_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


def _delay_ms(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    try:
        return parse_duration_ms(raw)
    except InvalidDuration as exc:
        raise IngressError(400, f"bad delay: {exc}") from exc


class IngressError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


class IngressServer:
    def __init__(
        self,
        registry: Registry,
        gateway: InvocationGateway,
        *,
        is_ready: Callable[[], bool],
        limit: RequestLimit,
        body_timeout_s: float,
        retry_after_s: int,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._registry = registry
        self._gateway = gateway
        self._is_ready = is_ready
        self._max_body_bytes = max_body_bytes
        self._body_timeout_s = body_timeout_s
        self._retry_after_s = retry_after_s
        # aiohttp's own limit would answer 413 in plain text; we check the size ourselves.
        self.app = web.Application(
            client_max_size=max_body_bytes + 1024, middlewares=[limit.middleware]
        )
        self.app.router.add_get("/restate/health", self._health)
        for verb in ("attach", "output"):
            for path in (
                "/restate/invocation/{id}/" + verb,
                "/restate/workflow/{service}/{key}/" + verb,
                "/restate/invocation/{service}/{handler}/{idempotency_key}/" + verb,
                "/restate/invocation/{service}/{key}/{handler}/{idempotency_key}/" + verb,
            ):
                self.app.router.add_route("GET", path, self._attach)
                self.app.router.add_route("POST", path, self._attach)
        self.app.router.add_post("/restate/awakeables/{id}/resolve", self._resolve_awakeable)
        self.app.router.add_post("/restate/awakeables/{id}/reject", self._reject_awakeable)
        self.app.router.add_route("POST", "/{path:.+}", self._invoke)
        self.app.router.add_route("*", "/{path:.*}", self._not_found)

    async def _health(self, request: web.Request) -> web.Response:
        if not self._is_ready():
            return error_response(503, "the node is starting")
        return web.json_response({"status": "ok"})

    async def _not_found(self, request: web.Request) -> web.Response:
        return error_response(404, f"no route for {request.method} {request.path}")

    async def _invoke(self, request: web.Request) -> web.Response:
        try:
            if not self._is_ready():
                raise IngressError(503, "the node is starting")
            target, handler, send = self._resolve(request.match_info["path"])
            body = await self._read_body(request)
            idempotency_key = request.headers.get(IDEMPOTENCY_HEADER) or None
            headers = [
                (k.lower(), v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
            ]
            if send:
                delay_ms = _delay_ms(request.query.get("delay"))
                invocation_id = await self._gateway.send(
                    target, handler, body, headers, idempotency_key, delay_ms
                )
                return web.json_response(
                    {"invocationId": invocation_id, "status": "Accepted"},
                    status=202,
                    headers={ID_HEADER: invocation_id},
                )
            invocation_id, result = await self._gateway.call(
                target, handler, body, headers, idempotency_key
            )
        except IngressError as exc:
            return error_response(exc.status, exc.message)
        except BodyTimeout as exc:
            return timed_out(exc)
        return self._render(invocation_id, result)

    def _render(self, invocation_id: str, result: Success | Failure) -> web.Response:
        if isinstance(result, Failure) and result.code == TOO_MANY_ATTACHED:
            # Too many requests wait for this invocation already (--max-attached-requests).
            return refusal(result.code, result.message, self._retry_after_s)
        return _render(invocation_id, result)

    async def _attach(self, request: web.Request) -> web.Response:
        """Wait for (``attach``) or read (``output``, 470 while running) a result."""
        try:
            if not self._is_ready():
                raise IngressError(503, "the node is starting")
            invocation_id = self._attach_target(request.match_info)
            wait = request.path.endswith("/attach")
            result = await self._gateway.attach(invocation_id, wait=wait)
        except IngressError as exc:
            return error_response(exc.status, exc.message)
        return self._render(invocation_id, result)

    def _attach_target(self, match: Mapping[str, str]) -> str:
        if "id" in match:
            try:
                parse_partition_key(match["id"])
            except InvalidInvocationId as exc:
                raise IngressError(400, str(exc)) from exc
            return match["id"]
        service = self._registry.service(match["service"])
        if service is None:
            raise IngressError(404, f"service {match['service']!r} not found")
        if "idempotency_key" not in match:
            if service.service_type != "workflow":
                raise IngressError(400, f"{service.name!r} is not a workflow")
            return workflow_run_id(service.name, match["key"])
        key = match.get("key")
        resolved = service.resolve(match["handler"], key)
        if resolved is None:
            raise IngressError(404, f"handler {service.name}/{match['handler']} not found")
        return self._gateway.invocation_id_for(resolved[0], match["idempotency_key"])

    async def _resolve_awakeable(self, request: web.Request) -> web.Response:
        try:
            body = await self._read_body(request)
            return await self._complete_awakeable(request, Success(body or b"null"))
        except IngressError as exc:
            return error_response(exc.status, exc.message)
        except BodyTimeout as exc:
            return timed_out(exc)

    async def _reject_awakeable(self, request: web.Request) -> web.Response:
        try:
            body = await self._read_body(request)
            reason = body.decode(errors="replace") if body else "rejected"
            try:
                decoded = msgspec.json.decode(body) if body else None
            except msgspec.DecodeError:
                decoded = None
            if isinstance(decoded, str):
                reason = decoded
            elif isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
                reason = decoded["message"]
            return await self._complete_awakeable(request, Failure(500, reason))
        except IngressError as exc:
            return error_response(exc.status, exc.message)
        except BodyTimeout as exc:
            return timed_out(exc)

    async def _complete_awakeable(
        self, request: web.Request, result: Success | Failure
    ) -> web.Response:
        if not self._is_ready():
            raise IngressError(503, "the node is starting")
        awakeable_id = request.match_info["id"]
        try:
            outcome = await self._gateway.complete_awakeable(awakeable_id, result)
        except InvalidAwakeableId as exc:
            raise IngressError(400, str(exc)) from exc
        if isinstance(outcome, Failure):
            raise IngressError(outcome.code, outcome.message)
        return web.Response(status=202)

    def _resolve(self, path: str) -> tuple[Target, HandlerInfo, bool]:
        parts = path.split("/")
        send = parts[-1] == "send" and len(parts) >= 3
        if send:
            parts = parts[:-1]
        if not parts or not parts[0]:
            raise IngressError(404, "no service in the path")
        service = self._registry.service(parts[0])
        if service is None:
            raise IngressError(404, f"service {parts[0]!r} not found")
        keyed = service.service_type != "service"
        if len(parts) == 2:
            if keyed and parts[1] in service.handlers:
                raise IngressError(
                    400,
                    f"{service.service_type.replace('_', ' ')} {service.name!r} needs a key: "
                    f"POST /{service.name}/{{key}}/{parts[1]}",
                )
            return self._target(service, None, parts[1]), self._handler(service, parts[1]), send
        if len(parts) == 3 and keyed:
            key = parts[1]
            if not key:
                raise IngressError(400, f"empty key for {service.name!r}")
            return self._target(service, key, parts[2]), self._handler(service, parts[2]), send
        raise IngressError(404, f"no handler at /{path}")

    @staticmethod
    def _handler(service: ServiceInfo, name: str) -> HandlerInfo:
        handler = service.handlers.get(name)
        if handler is None:
            raise IngressError(404, f"handler {service.name}/{name} not found")
        return handler

    def _target(self, service: ServiceInfo, key: str | None, handler_name: str) -> Target:
        handler = self._handler(service, handler_name)
        return Target(
            service=service.name,
            handler=handler_name,
            service_type=service.service_type,
            handler_kind=handler.kind,
            key=key,
        )

    async def _read_body(self, request: web.Request) -> bytes:
        try:
            body = await read_body(request, self._body_timeout_s, self._max_body_bytes)
        except BodyTooLarge as exc:
            raise IngressError(413, str(exc)) from exc
        if body.strip():
            try:
                msgspec.json.decode(body)
            except msgspec.DecodeError as exc:
                raise IngressError(400, f"the body is not valid JSON: {exc}") from exc
        return body


__all__ = ["IngressServer", "error_response"]


def _render(invocation_id: str, result: Success | Failure) -> web.Response:
    """A result as Restate's ingress answers it."""
    match result:
        case Success(value=value):
            return web.Response(
                body=value,
                status=200,
                content_type="application/json",
                headers={ID_HEADER: invocation_id},
            )
        case Failure(code=code, message=message):
            status = code if 400 <= code <= 599 else 500
            return web.json_response(
                {"code": code, "message": message},
                status=status,
                headers={ID_HEADER: invocation_id},
            )
