"""Bounds of the HTTP servers (DESIGN §11): requests in progress, push-back, read timeouts.

The ingress and admin servers share these; the handlers themselves only call ``read_body``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from runtime.http_errors import ErrorSource, error_response
from runtime.metrics import REQUESTS_REFUSED

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Why the node cannot take more work now (None: it can).
Overload = Callable[[], str | None]

TOO_MANY_REQUESTS = 429
UNAVAILABLE = 503
REQUEST_TIMEOUT = 408
_DRAIN_BYTES_MAX = 64 * 1024


def refusal(
    status: int,
    message: str,
    retry_after_s: int,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A 429/503 answer of the ingress: its error body and when to try again (Retry-After)."""
    return error_response(
        status,
        message,
        source="ingress",
        headers={**(headers or {}), "Retry-After": str(retry_after_s)},
    )


class RequestLimit:
    """An aiohttp middleware: at most ``limit`` requests in progress, and no request that would
    start new work (``starts_work``) while ``overloaded()`` says why not. A refused request is
    answered at once, before its body is read (so it holds no memory) and without appending
    anything. ``exempt`` paths (health checks) always pass."""

    def __init__(
        self,
        limit: int,
        retry_after_s: int,
        *,
        overloaded: Overload = lambda: None,
        starts_work: Callable[[web.Request], bool] = lambda _: True,
        exempt: frozenset[str] = frozenset(),
    ) -> None:
        self._limit = limit
        self._retry_after_s = retry_after_s
        self._overloaded = overloaded
        self._starts_work = starts_work
        self._exempt = exempt
        self.in_flight = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in self._exempt:
            return await handler(request)
        if self.in_flight >= self._limit:
            REQUESTS_REFUSED.labels("concurrency").inc()
            return self._refuse(
                request, TOO_MANY_REQUESTS, f"this node has {self._limit} requests in progress"
            )
        if self._starts_work(request) and (reason := self._overloaded()) is not None:
            REQUESTS_REFUSED.labels("backlog").inc()
            return self._refuse(request, UNAVAILABLE, reason)
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    def _refuse(self, request: web.Request, status: int, message: str) -> web.Response:
        response = refusal(status, f"{message}; retry later", self._retry_after_s)
        length = request.content_length
        if length is None or length > _DRAIN_BYTES_MAX:
            # Not worth draining (aiohttp reads an unread body before the next request): close
            # the connection after this answer. A small body is drained and the connection kept,
            # so a refused client does not pay a reconnect.
            response.force_close()
        return response


class BodyTimeout(Exception):
    """The client did not send the whole body in time."""


async def read_body(request: web.Request, timeout_s: float, limit: int | None = None) -> bytes:
    """The request body, read within ``timeout_s`` (a slow client is cut off with
    ``BodyTimeout``); past ``limit`` bytes raises ``BodyTooLarge``."""
    length = request.content_length
    if limit is not None and length is not None and length > limit:
        raise BodyTooLarge(f"body of {length} bytes exceeds {limit}")
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise BodyTooLarge(f"body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


class BodyTooLarge(Exception):
    """The body is over the size limit."""


def timed_out(error: BodyTimeout, *, source: ErrorSource | None) -> web.Response:
    """408, and the connection is closed (the rest of the body is never read). ``source``: as
    the server's other errors (``"ingress"`` on the ingress, none on the admin API)."""
    response = error_response(REQUEST_TIMEOUT, str(error), source=source)
    response.force_close()
    return response


async def read_body_or_error(
    request: web.Request, timeout_s: float, limit: int | None
) -> bytes | web.Response:
    """The body as ``read_body`` reads it, or the answer to send instead on the admin and
    internal APIs (no error source): 408 (connection closed) if it came too slowly, 413 if it
    is over ``limit``."""
    try:
        return await read_body(request, timeout_s, limit)
    except BodyTimeout as exc:
        return timed_out(exc, source=None)
    except BodyTooLarge as exc:
        return error_response(413, str(exc))


class HeaderDeadline(asyncio.Protocol):
    """Wraps the protocol aiohttp's ``web.Server`` makes for a connection: a connection that has
    not sent its first request's line and headers within ``timeout_s`` is closed (a slowloris
    client dribbling header bytes). Later requests on a kept-alive connection are bounded by the
    keep-alive timeout, which aiohttp runs from the end of each response until the next request's
    headers are complete."""

    def __init__(self, inner: asyncio.Protocol, timeout_s: float) -> None:
        self._inner = inner
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._tail = b""
        # Whether the request line has begun: HTTP lets a client send empty lines before it,
        # which the parser skips, so a "blank line" among them ends no headers.
        self._started = False

    @classmethod
    def factory(
        cls, inner: Callable[[], asyncio.Protocol], timeout_s: float
    ) -> Callable[[], HeaderDeadline]:
        return lambda: cls(inner(), timeout_s)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout_s, self._expired)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            scanned = data
            if not self._started:
                scanned = data.lstrip(b"\r\n")
                self._started = bool(scanned)
            # The blank line ending the headers may straddle two reads.
            if self._started and b"\r\n\r\n" in self._tail + scanned:
                self._timer.cancel()
                self._timer = None
            elif self._started:
                self._tail = (self._tail + scanned)[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _expired(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.close()
