"""The ingress HTTP server: Restate's request paths, headers and error codes (DESIGN §7).

``POST|GET /{Service}/{handler}``, ``POST|GET /{Object}/{key}/{handler}``, either with ``/send``
appended for a one-way call (202). Errors are JSON ``{"code", "message", "source"}``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import msgspec
from aiohttp import hdrs, web

from partition_processor.actions import RespondToIngress, SendReceipt
from partition_processor.codes import TOO_MANY_ATTACHED
from partition_processor.commands import Target
from partition_processor.ids import (
    InvalidAwakeableId,
    InvalidInvocationId,
    parse_partition_key,
    workflow_run_id,
)
from partition_processor.journal import Failure, Success
from runtime.health import NodeHealth
from runtime.http_errors import ErrorSource, error_response
from runtime.http_limits import (
    BodyTimeout,
    BodyTooLarge,
    RequestLimit,
    read_body,
    refusal,
    timed_out,
)
from runtime.ingress.content import InputRejected, check_input, output_content_type, rfc3339
from runtime.ingress.durations import InvalidDuration, parse_duration_ms
from runtime.ingress.gateway import InvocationGateway, ResultUnavailable
from runtime.ingress.validation import (
    InvalidRequest,
    check_json,
    check_text,
    forwarded_headers,
)
from runtime.limits import SizePolicy
from runtime.metadata import HandlerInfo, OutputRules, Registry, ServiceInfo
from runtime.metrics import observe_ingress
from runtime.security.headers import HeaderSeal
from runtime.security.tokens import Middleware

IDEMPOTENCY_HEADER = "idempotency-key"
ID_HEADER = "x-restate-id"
# A response flagged with this key leaves without a content-type header (aiohttp adds
# application/octet-stream to any body otherwise).
# A typed key: a plain string key warns (NotAppKeyWarning), an error where warnings are errors,
# as in a test process embedding the node (sdk.testing).
_NO_CONTENT_TYPE = web.ResponseKey("cairn.no_content_type", bool)


def _delay_ms(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    try:
        return parse_duration_ms(raw)
    except InvalidDuration as exc:
        raise IngressError(400, f"bad delay: {exc}") from exc


IngressError = InvalidRequest


def health_response(health: NodeHealth, *, source: ErrorSource | None = None) -> web.Response:
    """200 ``{"status": "ok"}`` (with ``"tasks"`` while a task that does not affect health is
    failing), or 503 with why: the failing partitions and tasks (shared by the ingress,
    ``source="ingress"``, and admin APIs)."""
    problem = health.problem()
    if problem is None:
        body: dict[str, object] = {"status": "ok"}
        if degraded := health.degraded():
            body["tasks"] = degraded
        return web.json_response(body)
    return error_response(
        503,
        problem["message"],
        source=source,
        headers={"Retry-After": str(health.retry_after_s)},
        extra={"partitions": problem["partitions"], "tasks": problem["tasks"]},
    )


def shutting_down_response(
    exc: ResultUnavailable, retry_after_s: int, *, source: ErrorSource | None = None
) -> web.Response:
    """503 to a caller still waiting when the node stops, or whose partition has no leader:
    the invocation goes on."""
    if exc.invocation_id is None:
        return error_response(
            503, str(exc), source=source, headers={"Retry-After": str(retry_after_s)}
        )
    return error_response(
        503,
        f"{exc.explanation}; the invocation goes on: "
        f"GET /restate/invocation/{exc.invocation_id}/attach for its result",
        source=source,
        headers={"Retry-After": str(retry_after_s), ID_HEADER: exc.invocation_id},
        extra={"invocationId": exc.invocation_id},
    )


async def _drop_default_content_type(request: web.Request, response: web.StreamResponse) -> None:
    if response.get(_NO_CONTENT_TYPE):
        response.headers.popall(hdrs.CONTENT_TYPE, None)


class IngressServer:
    def __init__(
        self,
        registry: Registry,
        gateway: InvocationGateway,
        *,
        health: NodeHealth,
        limits: SizePolicy,
        limit: RequestLimit,
        body_timeout_s: float,
        retry_after_s: int,
        authenticate: Middleware | None = None,
        seal: HeaderSeal | None = None,
    ) -> None:
        """``authenticate``: the bearer-token check, before every bound (an unauthenticated
        request takes no slot); ``seal`` encrypts secret headers before they reach the log."""
        self._registry = registry
        self._seal = seal
        self._gateway = gateway
        self._health_of = health
        self._limits = limits
        max_body_bytes = self._max_body_bytes = limits.body_bytes
        self._body_timeout_s = body_timeout_s
        self._retry_after_s = retry_after_s
        # aiohttp's own limit would answer 413 in plain text; we check the size ourselves.
        middlewares = (
            [limit.middleware] if authenticate is None else [authenticate, limit.middleware]
        )
        self.app = web.Application(client_max_size=max_body_bytes + 1024, middlewares=middlewares)
        self.app.on_response_prepare.append(_drop_default_content_type)
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
        # Restate takes GET and POST on a handler's path (a GET has no body, so it fits
        # handlers without input); other methods get 405 once the handler is known.
        self.app.router.add_route("*", "/{path:.+}", self._invoke)
        self.app.router.add_route("*", "/", self._not_found)

    async def _health(self, request: web.Request) -> web.Response:
        return health_response(self._health_of, source="ingress")

    def _check_available(self) -> None:
        """New requests are refused (503) while the node starts or shuts down."""
        reason = self._health_of.refusal()
        if reason is not None:
            raise IngressError(503, reason, headers={"Retry-After": str(self._retry_after_s)})

    def _refused(self, exc: IngressError) -> web.Response:
        """The error answer; every 503 (the log did not take a request, ...) has Retry-After."""
        headers = exc.headers
        if exc.status == 503 and not headers:
            headers = {"Retry-After": str(self._retry_after_s)}
        return error_response(exc.status, exc.message, source="ingress", headers=headers)

    async def _not_found(self, request: web.Request) -> web.Response:
        return error_response(
            404, f"no route for {request.method} {request.path}", source="ingress"
        )

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        """One invocation request, counted by service, handler and status (README "Metrics")."""
        started = time.perf_counter()
        resolved: list[Target] = []
        response = await self._invoke_unmetered(request, resolved)
        target = resolved[0] if resolved else None
        observe_ingress(
            target.service if target else "",
            target.handler if target else "",
            response.status,
            time.perf_counter() - started,
        )
        return response

    async def _invoke_unmetered(
        self, request: web.Request, resolved: list[Target]
    ) -> web.StreamResponse:
        try:
            self._check_available()
            target, handler, send = self._resolve(request.match_info["path"])
            resolved.append(target)
            idempotency_key = request.headers.get(IDEMPOTENCY_HEADER) or None
            if idempotency_key is not None:
                check_text(idempotency_key, "the idempotency key", self._limits)
                if handler.kind == "workflow":
                    raise IngressError(
                        400,
                        "cannot use the idempotency key with workflow handlers. The handler "
                        "invocation will already be idempotent by the workflow key itself.",
                    )
            if request.method not in (hdrs.METH_GET, hdrs.METH_POST):
                raise IngressError(405, "method not allowed")
            body = await self._read_body(request)
            try:
                check_input(handler.input, request.headers.get(hdrs.CONTENT_TYPE), body)
            except InputRejected as exc:
                raise IngressError(400, str(exc)) from exc
            if handler.input.json:
                check_json(body)  # nesting depth: refused before it reaches the log
            delay_ms = _delay_ms(request.query.get("delay"))
            headers = forwarded_headers(request.headers.items(), self._limits)
            if self._seal is not None:
                headers = self._seal.seal(headers)
            if send:
                invocation_id, receipt = await self._gateway.send(
                    target, handler, body, headers, idempotency_key, delay_ms
                )
                return _accepted(invocation_id, receipt)
            if delay_ms:
                raise IngressError(
                    400,
                    "cannot use the delay query parameter with calls. "
                    "The delay is supported only with sends",
                )
            reply = await self._gateway.call(target, handler, body, headers, idempotency_key)
        except IngressError as exc:
            return self._refused(exc)
        except ResultUnavailable as exc:
            return shutting_down_response(exc, self._retry_after_s, source="ingress")
        except BodyTimeout as exc:
            return timed_out(exc, source="ingress")
        return self._render(reply, handler)

    def _render(self, reply: RespondToIngress, handler: HandlerInfo | None) -> web.Response:
        result = reply.result
        if reply.refused and isinstance(result, Failure) and result.code == TOO_MANY_ATTACHED:
            # Too many requests wait for this invocation already (--max-attached-requests).
            return refusal(
                result.code,
                result.message,
                self._retry_after_s,
                headers={ID_HEADER: reply.invocation_id},
            )
        return _render(reply, handler)

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        """Wait for (``attach``) or read (``output``, 470 while running) a result."""
        try:
            self._check_available()
            invocation_id = self._attach_target(request.match_info)
            wait = request.path.endswith("/attach")
            reply = await self._gateway.attach(invocation_id, wait=wait)
        except IngressError as exc:
            return self._refused(exc)
        except ResultUnavailable as exc:
            return shutting_down_response(exc, self._retry_after_s, source="ingress")
        return self._render(reply, self._handler_of(reply))

    def _handler_of(self, reply: RespondToIngress) -> HandlerInfo | None:
        """The handler that produced an attached result (for its output content type)."""
        target = reply.target
        if target is None:
            return None
        service = self._registry.service(target.service)
        return service.handlers.get(target.handler) if service is not None else None

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
        for field in ("key", "idempotency_key"):
            if field in match:
                check_text(match[field], f"the {field.replace('_', ' ')}", self._limits)
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
            return self._refused(exc)
        except ResultUnavailable as exc:
            return shutting_down_response(exc, self._retry_after_s, source="ingress")
        except BodyTimeout as exc:
            return timed_out(exc, source="ingress")

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
            return self._refused(exc)
        except ResultUnavailable as exc:
            return shutting_down_response(exc, self._retry_after_s, source="ingress")
        except BodyTimeout as exc:
            return timed_out(exc, source="ingress")

    async def _complete_awakeable(
        self, request: web.Request, result: Success | Failure
    ) -> web.Response:
        self._check_available()
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
            raise IngressError(
                404,
                f"service '{parts[0]}' not found, "
                "make sure to register the service before calling it.",
            )
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
            check_text(key, "the key", self._limits)
            return self._target(service, key, parts[2]), self._handler(service, parts[2]), send
        raise IngressError(404, f"no handler at /{path}")

    @staticmethod
    def _handler(service: ServiceInfo, name: str) -> HandlerInfo:
        handler = service.handlers.get(name)
        if handler is None:
            raise IngressError(
                404,
                f"the service '{service.name}' exists, but the handler '{name}' was not found, "
                "check that the handler exists in the latest registered service version.",
            )
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
            return await read_body(request, self._body_timeout_s, self._max_body_bytes)
        except BodyTooLarge as exc:
            raise IngressError(413, str(exc)) from exc


__all__ = ["IngressServer", "error_response", "health_response", "shutting_down_response"]


def _accepted(invocation_id: str, receipt: SendReceipt) -> web.Response:
    """Restate's answer to a one-way request: whether this request created the invocation, and
    when a delayed one is due."""
    body: dict[str, str] = {"invocationId": invocation_id}
    if receipt.invoke_at_ms:
        body["executionTime"] = rfc3339(receipt.invoke_at_ms)
    body["status"] = "Accepted" if receipt.new else "PreviouslyAccepted"
    return web.json_response(body, status=202, headers={ID_HEADER: invocation_id})


def _render(reply: RespondToIngress, handler: HandlerInfo | None) -> web.Response:
    """A result as Restate's ingress answers it: the output as the handler produced it, with
    the handler's content type, or the failure as an error body."""
    headers = {ID_HEADER: reply.invocation_id}
    match reply.result:
        case Success(value=value):
            response = web.Response(body=value, status=200, headers=headers)
            content_type = output_content_type(handler.output if handler else OutputRules(), value)
            if content_type is None:
                response[_NO_CONTENT_TYPE] = True
            else:
                response.headers[hdrs.CONTENT_TYPE] = content_type
            return response
        case Failure(code=code, message=message, metadata=metadata):
            source: ErrorSource = "ingress" if reply.refused else "invocation"
            return error_response(code, message, source=source, headers=headers, metadata=metadata)
