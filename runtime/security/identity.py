"""Request identity: the node signs every call to an SDK endpoint (README, Security).

Each ``Discover`` call and each attempt's ``Invoke`` stream carries a short-lived JWT (EdDSA over
ed25519) in its gRPC metadata, as Restate signs its requests: ``x-restate-signature-scheme: v1``
and ``x-restate-jwt-v1: <token>``. The token names the invocation (``sub``: its id, or
``discover``), the deployment it was meant for (``dep``), a unique ``jti`` (the endpoint refuses
a token seen before) and a lifetime of ``TOKEN_LIFETIME_S``. Endpoints verify it against the
public key, written as Restate writes it: ``publickeyv1_`` + base58 of the 32 raw key bytes.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import base58
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime.security.errors import SecuritySetupError

PUBLIC_KEY_PREFIX = "publickeyv1_"
SCHEME_HEADER = "x-restate-signature-scheme"
JWT_HEADER = "x-restate-jwt-v1"
SCHEME = "v1"
AUDIENCE = "cairn-endpoint"
DISCOVER_SUBJECT = "discover"
# The subject of an Attempts stream's token (it carries many invocations; the SDK has its copy).
ATTEMPTS_SUBJECT = "attempts"
# A stream is verified once, when it opens: the token only has to outlive the trip there (and
# clocks a little apart). Short, so a token that leaks is soon worthless.
TOKEN_LIFETIME_S = 60


class SigningKeyError(SecuritySetupError):
    """The signing key file cannot be used."""


def public_key_id(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base58.b58encode(raw).decode()


def generate_key_pair(private_path: Path) -> str:
    """Write a new ed25519 private key (PKCS#8 PEM, mode 0600) to ``private_path``; return the
    public key in ``publickeyv1_...`` form. Refuses to overwrite an existing file."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return public_key_id(key)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {str(path)!r}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"{str(path)!r} is not an unencrypted PEM private key ({exc}); "
            "`cairn keys generate` writes one"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{str(path)!r} is not an ed25519 key")
    return key


class RequestSigner:
    """Signs the node's calls to endpoints with one ed25519 key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = public_key_id(key)

    def metadata(self, subject: str, deployment: str) -> tuple[tuple[str, str], ...]:
        now = int(time.time())
        claims = {
            "aud": AUDIENCE,
            "sub": subject,
            "dep": deployment,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now - 1,
            "exp": now + TOKEN_LIFETIME_S,
        }
        token = jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.key_id})
        return ((SCHEME_HEADER, SCHEME), (JWT_HEADER, token))
