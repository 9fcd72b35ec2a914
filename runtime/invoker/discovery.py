"""``Discover``: ask an SDK endpoint for its manifest and turn it into a ``Deployment``."""

from __future__ import annotations

from urllib.parse import urlparse

import grpc

from partition_processor.commands import HandlerKind, RetryPolicy, ServiceType
from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from runtime.invoker.codec import retry_policy_from_pb
from runtime.metadata import Deployment, HandlerInfo, ServiceInfo, deployment_id_for

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


def grpc_target(uri: str) -> str:
    """``http://127.0.0.1:9080`` → ``127.0.0.1:9080`` (the endpoint speaks plaintext gRPC)."""
    parsed = urlparse(uri if "://" in uri else f"http://{uri}")
    if parsed.scheme not in ("http", "grpc") or not parsed.hostname or not parsed.port:
        raise DiscoveryError(f"deployment uri must look like http://HOST:PORT, got {uri!r}")
    return f"{parsed.hostname}:{parsed.port}"


async def discover(uri: str, timeout_s: float = 10.0) -> Deployment:
    target = grpc_target(uri)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = endpoint_pb2_grpc.EndpointStub(channel)
        try:
            manifest = await stub.Discover(pb.DiscoverRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise DiscoveryError(
                f"discovery of {uri} failed: {exc.code().name}: {exc.details()}"
            ) from exc
    return deployment_from_manifest(uri, manifest)


def deployment_from_manifest(uri: str, manifest: pb.Manifest) -> Deployment:
    if manifest.protocol_version != SUPPORTED_PROTOCOL_VERSION:
        raise DiscoveryError(
            f"{uri} speaks protocol version {manifest.protocol_version}, "
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
        handlers = {}
        for handler in service.handlers:
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
                abort_timeout_ms=(
                    handler.abort_timeout_ms if handler.HasField("abort_timeout_ms") else None
                ),
            )
        services.append(ServiceInfo(service.name, service_type, handlers, deployment_id))
    return Deployment(id=deployment_id, uri=uri, services=services)
