"""Request identity, endpoint side: a real SDK endpoint with identity keys against a direct gRPC
client playing the runtime (signing with runtime.security.identity) and the attacker."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import sdk
from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from runtime.security.identity import (
    AUDIENCE,
    JWT_HEADER,
    SCHEME_HEADER,
    RequestSigner,
    public_key_id,
)
from sdk._transport.server import start_server
from tests.support.teardown import bounded

INVOCATION = "inv_" + "1" * 48
greeter = sdk.Service("Greeter")


@greeter.handler()
async def greet(ctx: sdk.Context, name: str) -> str:
    return f"Hello, {name}!"


Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, RequestSigner]]:
    key = Ed25519PrivateKey.generate()
    # One key on the app (restate-sdk's place), one more through start_server: both count.
    other = public_key_id(Ed25519PrivateKey.generate())
    app = sdk.app([greeter], identity_keys=[other])
    running = await start_server(app, port=0, identity_keys=[public_key_id(key)])
    yield f"127.0.0.1:{running.port}", RequestSigner(key)
    await bounded("the endpoint's stop", lambda: running.stop(0))


async def _discover(target: str, metadata: Metadata) -> pb.Manifest:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = endpoint_pb2_grpc.EndpointStub(channel)
        manifest: pb.Manifest = await stub.Discover(
            pb.DiscoverRequest(), metadata=metadata, timeout=10
        )
        return manifest


async def _invoke(target: str, metadata: Metadata, invocation_id: str = INVOCATION) -> str:
    """Start an attempt of Greeter/greet; the handler's output as text."""
    start = pb.RuntimeMessage(
        start=pb.Start(
            invocation_id=invocation_id,
            service="Greeter",
            handler="greet",
            known_entries=1,
            random_seed=1,
            attempt=0,
        )
    )
    entry = pb.RuntimeMessage(
        replay_entry=pb.JournalEntry(
            index=0,
            command=pb.JournalCommand(input=pb.InputCommand(value=json.dumps("Ada").encode())),
        )
    )
    finished = asyncio.Event()

    async def requests() -> AsyncIterator[pb.RuntimeMessage]:
        # Fed by grpc in the background: when the server refuses the call, the call ends with
        # the server's status (a write of our own after that would turn it into INTERNAL).
        yield start
        yield entry
        await finished.wait()

    async with grpc.aio.insecure_channel(target) as channel:
        call = endpoint_pb2_grpc.EndpointStub(channel).Invoke(
            requests(), metadata=metadata, timeout=10
        )
        try:
            async for message in call:
                if message.WhichOneof("kind") == "command":
                    return json.loads(message.command.command.output.value)  # type: ignore[no-any-return]
        finally:
            finished.set()
    raise AssertionError("no output")


def _forged(key: Ed25519PrivateKey, **claims: Any) -> Metadata:
    now = int(time.time())
    base = {
        "aud": AUDIENCE,
        "sub": "discover",
        "dep": "dp_x",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    token = jwt.encode({**base, **claims}, key, algorithm="EdDSA")
    return ((SCHEME_HEADER, "v1"), (JWT_HEADER, token))


async def _refused(call: Any) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
        return str(exc.details())
    raise AssertionError("the call was served")


async def test_signed_calls_are_served(endpoint: tuple[str, RequestSigner]) -> None:
    target, signer = endpoint
    manifest = await _discover(target, signer.metadata("discover", "dp_x"))
    assert [s.name for s in manifest.services] == ["Greeter"]
    assert await _invoke(target, signer.metadata(INVOCATION, "dp_x")) == "Hello, Ada!"


async def test_unsigned_wrong_expired_tampered_and_replayed_calls_are_refused(
    endpoint: tuple[str, RequestSigner],
) -> None:
    target, signer = endpoint
    assert "not signed" in await _refused(_discover(target, ()))
    assert "not signed" in await _refused(_invoke(target, ()))
    # Signed by a key the endpoint does not know.
    stranger = Ed25519PrivateKey.generate()
    assert "not signed by an identity key" in await _refused(
        _discover(target, RequestSigner(stranger).metadata("discover", "dp_x"))
    )
    # The right key, but expired (beyond the leeway), or not yet valid.
    past = int(time.time()) - 600
    assert "expired" in await _refused(
        _discover(target, _forged(signer._key, iat=past, nbf=past, exp=past + 60))
    )
    # Tampered: the claims changed (another invocation) under the original signature.
    metadata = signer.metadata(INVOCATION, "dp_x")
    header, payload, signature = metadata[1][1].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "inv_" + "2" * 48
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    tampered = (metadata[0], (JWT_HEADER, f"{header}.{forged}.{signature}"))
    await _refused(_invoke(target, tampered, "inv_" + "2" * 48))
    # A valid token for one invocation does not start another.
    other = "inv_" + "3" * 48
    assert "another invocation" in await _refused(_invoke(target, metadata, other))
    # Replayed: a token already used (by the call above) is refused the second time.
    fresh = signer.metadata(INVOCATION, "dp_x")
    assert await _invoke(target, fresh) == "Hello, Ada!"
    assert "replayed" in await _refused(_invoke(target, fresh))
    # A Discover token does not open an Invoke stream, nor the reverse.
    assert "another invocation" in await _refused(
        _invoke(target, signer.metadata("discover", "dp_x"))
    )
    assert "another call" in await _refused(_discover(target, signer.metadata(INVOCATION, "dp_x")))
    # Wrong audience, missing scheme.
    assert "not valid" in await _refused(_discover(target, _forged(signer._key, aud="other")))
    assert "not signed" in await _refused(
        _discover(target, ((JWT_HEADER, signer.metadata("discover", "d")[1][1]),))
    )
