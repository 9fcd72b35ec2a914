"""Request identity on the endpoint side: verify the runtime's signature on every call.

With identity keys configured (``sdk.app(..., identity_keys=[...])``, ``sdk.serve(app,
identity_keys=[...])``, ``python -m sdk ... --identity-key KEY``), a call is served only when its
gRPC metadata carries a JWT (``x-restate-jwt-v1``, scheme ``v1``) signed with EdDSA by one of the
keys, not expired, meant for this kind of call (``sub``: ``discover``, ``attempts`` for a stream
of many attempts, or the id of the invocation the ``Invoke`` stream starts), and not seen before
(``jti``). Keys are written as Restate writes them: ``publickeyv1_`` + base58 of the 32 raw
ed25519 key bytes.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Sequence
from typing import Any

import base58
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PUBLIC_KEY_PREFIX = "publickeyv1_"
SCHEME_HEADER = "x-restate-signature-scheme"
JWT_HEADER = "x-restate-jwt-v1"
AUDIENCE = "cairn-endpoint"
DISCOVER_SUBJECT = "discover"
# An Attempts stream's subject: it carries many invocations (their Starts are not checked).
ATTEMPTS_SUBJECT = "attempts"
# Clocks of the node and the endpoint a little apart.
LEEWAY_S = 5
# A token longer than this is not one of ours (the runtime's are ~400 characters).
MAX_TOKEN_CHARS = 4096
# Replay protection remembers every token id until its expiry; past this many at once (a flood
# of valid tokens cannot happen without the key) new calls are refused rather than forgotten.
MAX_REMEMBERED_TOKENS = 1_000_000


class IdentityError(Exception):
    """Why a call is refused (UNAUTHENTICATED)."""


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A ``publickeyv1_...`` key (``ValueError`` with the reason if it is not one)."""
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError(f"an identity key starts with {PUBLIC_KEY_PREFIX!r}, got {text[:40]!r}")
    try:
        raw = base58.b58decode(text[len(PUBLIC_KEY_PREFIX) :])
    except ValueError as exc:
        raise ValueError(f"identity key {text[:40]!r} is not base58: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"identity key {text[:40]!r} is not 32 bytes of ed25519 key")
    return Ed25519PublicKey.from_public_bytes(raw)


class IdentityVerifier:
    """Verifies the runtime's signed tokens against the configured public keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("identity_keys needs at least one key")
        self._keys = {key: parse_public_key(key) for key in keys}
        self._seen: set[str] = set()
        self._expiries: list[tuple[float, str]] = []

    def verify(self, metadata: Iterable[tuple[str, Any]], subject: str | None) -> dict[str, Any]:
        """The token's claims; ``IdentityError`` if the call must be refused. ``subject``: the
        expected ``sub`` (None: checked later, once the stream's Start names the invocation)."""
        values = {key.lower(): value for key, value in metadata}
        token = values.get(JWT_HEADER)
        if values.get(SCHEME_HEADER) != "v1" or not isinstance(token, str) or not token:
            raise IdentityError("the call is not signed (no x-restate-jwt-v1 token)")
        if len(token) > MAX_TOKEN_CHARS:
            raise IdentityError("the call's token is too long")
        claims = self._decode(token)
        if subject is not None and claims["sub"] != subject:
            raise IdentityError("the call's token was issued for another call")
        self._remember(str(claims["jti"]), float(claims["exp"]))
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise IdentityError(f"the call's token is malformed: {exc}") from exc
        candidates = [self._keys[kid]] if kid in self._keys else list(self._keys.values())
        failure: Exception | None = None
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    audience=AUDIENCE,
                    leeway=LEEWAY_S,
                    options={"require": ["exp", "iat", "nbf", "aud", "sub", "jti"]},
                )
                return claims
            except jwt.InvalidSignatureError as exc:
                failure = exc  # another key may have signed it
            except jwt.InvalidTokenError as exc:
                raise IdentityError(f"the call's token is not valid: {exc}") from exc
        raise IdentityError(f"the call's token is not signed by an identity key: {failure}")

    def _remember(self, jti: str, expiry: float) -> None:
        now = time.time()
        while self._expiries and self._expiries[0][0] + LEEWAY_S < now:
            self._seen.discard(heapq.heappop(self._expiries)[1])
        if jti in self._seen:
            raise IdentityError("the call's token was used before (replayed)")
        if len(self._seen) >= MAX_REMEMBERED_TOKENS:
            raise IdentityError("too many recent tokens to check for replays; retry later")
        self._seen.add(jti)
        heapq.heappush(self._expiries, (expiry, jti))
