"""The internal server: node-to-node requests on ``--internal-bind``, behind the cluster secret.

HTTP (aiohttp) rather than gRPC in ``proto/``: what nodes exchange are msgspec records the
runtime already encodes for its log (a ``RespondToIngress``, later a read to forward), so a route
is "bytes in, bytes out" with no second schema to keep in step; and the server shares the
ingress's and admin's aiohttp machinery (header deadline, body timeout and size bound). A new
node-to-node call is one ``InternalRoutes.add`` on the serving side and one
``InternalClient.post`` on the calling side.

Every request must carry ``authorization: Bearer <token>``, the token derived from the cluster
secret (``cluster_token``); it is compared in constant time, and anything else, on any path, is
answered 401 before routing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from runtime.http_errors import error_response
from runtime.http_limits import read_body_or_error

# A route's handler: the request body in, the response body out (None: 204 No Content).
InternalHandler = Callable[[bytes], Awaitable[bytes | None]]

ROUTE_PREFIX = "/internal/"
UNAUTHENTICATED = 401


class RejectedRequest(Exception):
    """A route refuses its request: answered with ``status`` and a JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def cluster_token(secret: bytes) -> str:
    """What a node sends to prove it knows the secret. A digest, not the secret itself: it is
    header-safe whatever bytes the secret file holds, and the file's content never travels."""
    return hashlib.sha256(b"cairn-cluster-secret\x00" + secret).hexdigest()


def authorization(secret: bytes) -> str:
    return f"Bearer {cluster_token(secret)}"


class InternalRoutes:
    """The node-to-node route table: path → handler, all ``POST``."""

    def __init__(self) -> None:
        self._handlers: dict[str, InternalHandler] = {}

    def add(self, path: str, handler: InternalHandler) -> None:
        if not path.startswith(ROUTE_PREFIX):
            raise ValueError(f"internal routes live under {ROUTE_PREFIX}, got {path!r}")
        if path in self._handlers:
            raise ValueError(f"internal route {path!r} is taken")
        self._handlers[path] = handler

    def items(self) -> list[tuple[str, InternalHandler]]:
        return sorted(self._handlers.items())


class InternalServer:
    """An aiohttp application for the routes, authenticated with the cluster secret."""

    def __init__(
        self,
        routes: InternalRoutes,
        secret: bytes,
        *,
        max_body_bytes: int,
        body_timeout_s: float,
    ) -> None:
        self._expected = authorization(secret).encode()
        self._max_body_bytes = max_body_bytes
        self._body_timeout_s = body_timeout_s
        self.app = web.Application(middlewares=[self._authenticate])
        for path, handler in routes.items():
            self.app.router.add_post(path, self._serve(handler))

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        given = request.headers.get("authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._expected):
            return error_response(
                UNAUTHENTICATED,
                "node-to-node requests need the cluster secret (--cluster-secret-file)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    def _serve(self, handler: InternalHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            body = await read_body_or_error(request, self._body_timeout_s, self._max_body_bytes)
            if isinstance(body, web.Response):
                return body
            try:
                answer = await handler(body)
            except RejectedRequest as exc:
                return error_response(exc.status, exc.message)
            if answer is None:
                return web.Response(status=204)
            return web.Response(body=answer, content_type="application/octet-stream")

        return serve
