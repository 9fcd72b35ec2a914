"""The ingress of a node: the invocation gateway (requests into the log, results back to the
waiting callers) and the ingress HTTP server in front of it, with its request bounds."""

from __future__ import annotations

from runtime.config import NodeConfig
from runtime.health import NodeHealth
from runtime.http_limits import Overload, RequestLimit
from runtime.ingress.gateway import InvocationGateway, PendingResponses
from runtime.ingress.http import IngressServer
from runtime.limits import SizePolicy
from runtime.log import Log
from runtime.metadata import Registry
from runtime.security.setup import NodeSecurity


def wire_ingress(
    config: NodeConfig,
    *,
    log_: Log,
    node_id: str,
    responses: PendingResponses,
    registry: Registry,
    health: NodeHealth,
    limits: SizePolicy,
    security: NodeSecurity,
    overloaded: Overload,
) -> tuple[InvocationGateway, IngressServer]:
    """The gateway (the admin API submits through it too) and the ingress server (not yet
    serving)."""
    gateway = InvocationGateway(
        log_,
        node_id,
        responses,
        max_record_bytes=limits.record_bytes,
        max_attached=config.max_attached_requests,
        receipt_timeout_s=config.send_receipt_timeout_ms / 1000,
        leader_timeout_s=config.ingress_leader_timeout_ms / 1000,
        reattach_interval_s=config.ingress_reattach_interval_ms / 1000,
    )
    limit = RequestLimit(
        config.max_concurrent_requests,
        config.retry_after_s,
        overloaded=overloaded,
        # Attach, output and awakeable requests start nothing new: they help drain a backlog.
        starts_work=lambda request: not request.path.startswith("/restate/"),
        exempt=frozenset({"/restate/health"}),
    )
    ingress = IngressServer(
        registry,
        gateway,
        health=health,
        limits=limits,
        limit=limit,
        body_timeout_s=config.http_body_timeout_ms / 1000,
        retry_after_s=config.retry_after_s,
        authenticate=security.ingress_middleware(),
        seal=security.seal,
    )
    return gateway, ingress
