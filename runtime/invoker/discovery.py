"""``Discover``: ask an SDK endpoint for its manifest and turn it into a ``Deployment``."""

from __future__ import annotations

import math
from urllib.parse import urlparse

import grpc

from partition_processor.commands import HandlerKind, RetryPolicy, ServiceType
from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from runtime.invoker.codec import retry_policy_from_pb
from runtime.metadata import (
    Deployment,
    HandlerInfo,
    InputRules,
    OutputRules,
    ServiceInfo,
    deployment_id_for,
)
from runtime.security.endpoints import EndpointSecurity

SUPPORTED_PROTOCOL_VERSION = 1

_SERVICE_TYPES: dict[int, ServiceType] = {
    pb.SERVICE_TYPE_SERVICE: "service",
    pb.SERVICE_TYPE_VIRTUAL_OBJECT: "virtual_object",
    pb.SERVICE_TYPE_WORKFLOW: "workflow",
}
_HANDLER_KINDS: dict[int, HandlerKind] = {
    pb.HANDLER_KIND_UNSPECIFIED: "none",
    pb.HANDLER_KIND_EXCLUSIVE: "exclusive",
    pb.HANDLER_KIND_SHARED: "shared",
    pb.HANDLER_KIND_WORKFLOW: "workflow",
}


class DiscoveryError(Exception):
    """The endpoint could not be reached or returned an unusable manifest."""


# The schemes a deployment may use: plaintext gRPC (http, grpc) or gRPC over TLS (https, grpcs).
PLAINTEXT_SCHEMES = ("http", "grpc")
TLS_SCHEMES = ("https", "grpcs")


def endpoint_address(uri: str) -> tuple[str, bool]:
    """``https://host:9080`` → ``("host:9080", True)``: the gRPC target and whether it is TLS."""
    expected = (
        "deployment uri must look like http://HOST:PORT (schemes: http, https, grpc, grpcs), "
        f"got {uri[:200]!r}"
    )
    if len(uri) > 2048 or not uri.isprintable() or any(c.isspace() for c in uri):
        raise DiscoveryError(expected)
    try:
        parsed = urlparse(uri if "://" in uri else f"http://{uri}")
        port = parsed.port  # raises ValueError when out of 0..65535 or not a number
    except ValueError as exc:
        raise DiscoveryError(f"{expected}: {exc}") from exc
    scheme = parsed.scheme.lower()
    if scheme not in PLAINTEXT_SCHEMES + TLS_SCHEMES or not parsed.hostname or not port:
        raise DiscoveryError(expected)
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username:
        raise DiscoveryError(f"{expected}: no path, query or user part is allowed")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"{host}:{port}", scheme in TLS_SCHEMES


def grpc_target(uri: str) -> str:
    """``http://127.0.0.1:9080`` → ``127.0.0.1:9080``."""
    return endpoint_address(uri)[0]


def _discovery_failure(uri: str, code: grpc.StatusCode, timeout_s: float) -> str:
    """What a failed Discover call means, in our words: the transport's own text would tell a
    caller of the admin API what listens on any host and port it names."""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{uri} did not answer discovery within {timeout_s:g} s"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return (
            f"{uri} refused this node's request signature: give the endpoint the public key of "
            "--request-signing-key-file (identity_keys), or sign with the key it expects"
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            f"cannot reach a Cairn endpoint at {uri}: unreachable, nothing listening, "
            "not speaking gRPC, or a TLS mismatch (https/grpcs needs a TLS endpoint)"
        )
    return f"{uri} is not a Cairn/Restate endpoint (its Discover call failed: {code.name})"


async def discover(
    uri: str, *, timeout_s: float, security: EndpointSecurity | None = None
) -> Deployment:
    """The deployment an endpoint serves; ``timeout_s`` is ``NodeConfig.discovery_timeout_ms``."""
    target, tls = endpoint_address(uri)
    if tls and security is None:
        raise DiscoveryError(f"{uri}: this node has no TLS settings for deployments")
    metadata = security.discover_metadata(deployment_id_for(uri)) if security else ()
    channel = security.channel(target, tls) if security else grpc.aio.insecure_channel(target)
    async with channel:
        stub = endpoint_pb2_grpc.EndpointStub(channel)
        try:
            manifest = await stub.Discover(
                pb.DiscoverRequest(), timeout=timeout_s, metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise DiscoveryError(_discovery_failure(uri, exc.code(), timeout_s)) from exc
    return deployment_from_manifest(uri, manifest)


# Service and handler names are parts of URLs and store keys: short, printable, no slash.
MAX_NAME_CHARS = 255


def _check_name(name: str, what: str) -> None:
    if not name or len(name) > MAX_NAME_CHARS or "/" in name or not name.isprintable():
        raise DiscoveryError(f"{what} name {name[:100]!r} is not a valid name")


def _check_policy(policy: pb.RetryPolicy, what: str) -> None:
    if not math.isfinite(policy.factor) or policy.factor < 0:
        raise DiscoveryError(f"{what}: retry factor {policy.factor} must be finite and >= 0")


def deployment_from_manifest(uri: str, manifest: pb.Manifest) -> Deployment:
    if manifest.protocol_version != SUPPORTED_PROTOCOL_VERSION:
        raise DiscoveryError(
            f"protocol mismatch: {uri} speaks protocol version {manifest.protocol_version}, "
            f"this runtime speaks {SUPPORTED_PROTOCOL_VERSION}"
        )
    if not manifest.services:
        raise DiscoveryError(f"{uri} exposes no services")
    deployment_id = deployment_id_for(uri)
    services = []
    for service in manifest.services:
        service_type = _SERVICE_TYPES.get(service.type)
        if service_type is None:
            raise DiscoveryError(f"service {service.name!r} has an unknown type {service.type}")
        _check_name(service.name, "service")
        handlers = {}
        for handler in service.handlers:
            _check_name(handler.name, f"handler of {service.name}")
            if handler.HasField("retry_policy"):
                _check_policy(handler.retry_policy, f"{service.name}/{handler.name}")
            kind = _HANDLER_KINDS.get(handler.kind, "none")
            if service_type == "virtual_object" and kind == "none":
                kind = "exclusive"
            handlers[handler.name] = HandlerInfo(
                name=handler.name,
                kind=kind,
                retry_policy=(
                    retry_policy_from_pb(handler.retry_policy)
                    if handler.HasField("retry_policy")
                    else RetryPolicy()
                ),
                idempotency_retention_ms=(
                    handler.idempotency_retention_ms
                    if handler.HasField("idempotency_retention_ms")
                    else None
                ),
                workflow_retention_ms=(
                    handler.workflow_retention_ms
                    if handler.HasField("workflow_retention_ms")
                    else None
                ),
                inactivity_timeout_ms=(
                    handler.inactivity_timeout_ms
                    if handler.HasField("inactivity_timeout_ms")
                    else None
                ),
                input=_input_rules(handler) if handler.HasField("input") else InputRules(),
                output=_output_rules(handler) if handler.HasField("output") else OutputRules(),
                documentation=(
                    handler.documentation if handler.HasField("documentation") else None
                ),
                metadata=dict(handler.metadata),
                abort_timeout_ms=(
                    handler.abort_timeout_ms if handler.HasField("abort_timeout_ms") else None
                ),
            )
        services.append(
            ServiceInfo(
                service.name,
                service_type,
                handlers,
                deployment_id,
                documentation=(
                    service.documentation if service.HasField("documentation") else None
                ),
                metadata=dict(service.metadata),
            )
        )
    return Deployment(
        id=deployment_id,
        uri=uri,
        services=services,
        message_batches=manifest.message_batches,
        multiplex=manifest.multiplex,
    )


def _input_rules(handler: pb.HandlerManifest) -> InputRules:
    payload = handler.input
    content_type = payload.content_type if payload.HasField("content_type") else None
    if content_type is not None:
        _check_accept(handler.name, content_type)
    return InputRules(
        required=payload.required,
        content_type=content_type,
        non_empty=payload.non_empty,
        json=payload.json,
    )


def _output_rules(handler: pb.HandlerManifest) -> OutputRules:
    payload = handler.output
    content_type = payload.content_type if payload.HasField("content_type") else None
    if content_type is not None and (not content_type.strip() or "\n" in content_type):
        raise DiscoveryError(f"handler {handler.name!r}: bad content type {content_type!r}")
    return OutputRules(content_type, payload.set_content_type_if_empty)


def _check_accept(handler: str, accept: str) -> None:
    """``*/*``, ``type/*`` or ``type/subtype``, as Restate accepts them at registration."""
    major, slash, minor = accept.strip().partition("/")
    if not slash or not major or not minor or (major == "*" and minor != "*"):
        raise DiscoveryError(
            f"handler {handler!r}: cannot use {accept!r} as accepted content type "
            "(expected */*, TYPE/* or TYPE/SUBTYPE)"
        )
