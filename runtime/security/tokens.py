"""Optional bearer-token authentication of the admin and ingress HTTP servers.

A token file holds one token per line (blank lines and ``#`` comments are skipped); several lines
allow a rotation: add the new token, move the clients over, remove the old one. The file is read
again whenever it changes (its size or modification time), so a rotation needs no restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from runtime.http_errors import ErrorSource, error_response
from runtime.security.errors import SecuritySetupError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenFileError(SecuritySetupError):
    """The token file cannot be read or holds no token."""


def _digest(token: str) -> bytes:
    # Comparing fixed-length digests: compare_digest then leaks nothing about a token's length.
    return hashlib.sha256(token.encode()).digest()


def read_tokens(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {str(path)!r}: {exc}") from exc
    tokens = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    if not tokens:
        raise TokenFileError(f"the token file {str(path)!r} holds no token")
    for token in tokens:
        if any(c.isspace() for c in token) or not token.isprintable():
            raise TokenFileError(f"a token in {str(path)!r} holds whitespace or control characters")
    return tokens


class BearerTokens:
    """The tokens of one server, read from ``path`` and re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp = self._file_stamp()
        self._digests = [_digest(t) for t in read_tokens(path)]  # raises at startup: bad file

    def _file_stamp(self) -> tuple[int, int, int] | None:
        # (A file replaced by a rename has another inode, whatever its time and size.)
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _refresh(self) -> None:
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return  # (a file briefly gone while it is replaced keeps the tokens it had)
        try:
            self._digests = [_digest(t) for t in read_tokens(self._path)]
            log.info("token file %s reloaded (%d tokens)", self._path, len(self._digests))
        except TokenFileError as exc:
            log.warning("token file changed but unusable, keeping the previous tokens: %s", exc)
        self._stamp = stamp

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries one of the tokens (constant time:
        every token is compared, with a comparison that does not stop at the first difference)."""
        self._refresh()
        if authorization is None:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        offered = _digest(token.strip())
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(offered, digest)
        return matched


def _basic_password(authorization: str | None) -> str | None:
    """The password of an ``Authorization: Basic`` value (None: not Basic, or malformed)."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


def token_middleware(
    tokens: BearerTokens,
    *,
    open_paths: frozenset[str],
    source: ErrorSource | None,
    browser_prefix: str | None = None,
) -> Middleware:
    """An aiohttp middleware answering 401 (JSON body) to a request without a valid token;
    ``open_paths`` (health checks) pass without one. Under ``browser_prefix`` (the web
    console) the token may also come as the password of HTTP Basic authentication, which a
    browser asks for by itself: a browser cannot add a bearer header to a page it navigates to."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        header = request.headers.get(hdrs.AUTHORIZATION)
        if tokens.accepts(header):
            return await handler(request)
        browser = browser_prefix is not None and (
            request.path == browser_prefix or request.path.startswith(f"{browser_prefix}/")
        )
        if browser and (password := _basic_password(header)) is not None:
            if tokens.accepts(f"Bearer {password}"):
                return await handler(request)
        message = (
            "missing bearer token (Authorization: Bearer TOKEN)"
            if header is None
            else "invalid bearer token"
        )
        challenge = 'Basic realm="Cairn console", charset="UTF-8"' if browser else "Bearer"
        response = error_response(
            401, message, source=source, headers={hdrs.WWW_AUTHENTICATE: challenge}
        )
        # The body was not read: close rather than drain an unauthenticated upload.
        response.force_close()
        return response

    return authenticate
