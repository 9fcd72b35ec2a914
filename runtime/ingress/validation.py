"""Checks on what enters through the ingress and admin HTTP APIs (DESIGN §11, validate at edges).

Every refusal is an ``InvalidRequest`` with a 4xx status and a message that says what to fix, so
nothing malformed reaches the log and no bad input costs a 500 or a traceback.
"""

from __future__ import annotations

import array
import itertools
import logging
import re
import time
from collections.abc import Iterable, Mapping

import msgspec
from aiohttp import http_exceptions

from runtime.limits import SizePolicy
from runtime.metrics import MALFORMED_REQUESTS

# Deeper JSON is refused with 400: decoders (msgspec here, ``json`` in the SDK) recurse per level
# and hit Python's recursion limit near 1000, which would fail the handler on every attempt.
MAX_JSON_DEPTH = 256
# Headers the ingress does not forward to the handler (``ctx.request().headers``).
HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Opening brackets → 1, closing → -1 (as signed bytes), everything else deleted.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")


class InvalidRequest(Exception):
    """A request refused with ``status`` (4xx, or 503 while unavailable) and ``message``."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers  # sent with the error (e.g. Retry-After on a 503)


def _shown(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_text(value: str, what: str, limits: SizePolicy) -> None:
    """A key or name: valid UTF-8 and at most ``limits.key_bytes`` bytes (400 otherwise)."""
    try:
        size = len(value.encode())
    except UnicodeEncodeError as exc:
        raise InvalidRequest(400, f"{what} is not valid UTF-8") from exc
    if size > limits.key_bytes:
        raise InvalidRequest(
            400, f"{what} of {size} bytes exceeds the limit of {limits.key_bytes} bytes"
        )


def forwarded_headers(
    headers: Iterable[tuple[str, str]], limits: SizePolicy
) -> list[tuple[str, str]]:
    """The request headers the handler sees: UTF-8 only, within the headers budget."""
    forwarded = []
    total = 0
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            continue
        try:
            total += len(lowered.encode()) + len(value.encode())
        except UnicodeEncodeError as exc:
            # aiohttp hands undecodable header bytes over as surrogates; they cannot be logged.
            raise InvalidRequest(400, f"header {name!r} is not valid UTF-8") from exc
        forwarded.append((lowered, value))
    if total > limits.headers_bytes:
        raise InvalidRequest(
            431, f"headers of {total} bytes exceed the limit of {limits.headers_bytes} bytes"
        )
    return forwarded


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped)."""
    brackets = _STRING.sub(b"", body).translate(_BRACKETS, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(itertools.accumulate(array.array("b", brackets)))


def check_json(body: bytes) -> None:
    """A request body must be empty or JSON nested at most ``MAX_JSON_DEPTH`` deep (400)."""
    if not body.strip():
        return
    if json_depth(body) > MAX_JSON_DEPTH:
        raise InvalidRequest(400, f"the body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidRequest(400, f"the body is not valid JSON: {exc}") from exc


class MalformedRequestFilter(logging.Filter):
    """Replaces aiohttp's traceback per unparsable HTTP request (it already answers 400) with a
    metric and at most one log line per ``interval_s``."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last_logged = -interval_s
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, http_exceptions.HttpProcessingError):
            return True
        MALFORMED_REQUESTS.labels("http").inc()
        now = time.monotonic()
        if now - self._last_logged < self._interval_s:
            self._suppressed += 1
            return False
        message = str(error.message).splitlines()[0] if error.message else type(error).__name__
        record.msg = "malformed HTTP request refused with 400: %s (%d more since the last line)"
        record.args = (message, self._suppressed)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._last_logged, self._suppressed = now, 0
        return True


class UndecodableMessageFilter(logging.Filter):
    """gRPC logs a traceback for every message it cannot deserialize; an endpoint sending
    garbage is a protocol error the invoker already reports (the attempt fails), so keep one
    line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            original = record.getMessage()
            record.msg = "%s (%s: %.200s)"
            record.args = (original, type(error).__name__, str(error))
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_HTTP_FILTER = MalformedRequestFilter()
_GRPC_FILTER = UndecodableMessageFilter()


def quiet_malformed_requests() -> None:
    """Install the filters on aiohttp's server and gRPC's codec loggers (idempotent)."""
    for name, installed in (("aiohttp.server", _HTTP_FILTER), ("grpc._common", _GRPC_FILTER)):
        logger = logging.getLogger(name)
        if installed not in logger.filters:
            logger.addFilter(installed)
