"""The node's HTTP servers: the ingress, admin and internal ports, each served under the node's
HTTP timeouts, closed together when the node stops; and the routes of the internal port."""

from __future__ import annotations

import asyncio

from aiohttp import web

from runtime.admin.placement import ClusterAdmin
from runtime.admin.sql import SqlQueries
from runtime.cluster import RESPONSES_PATH, response_route
from runtime.config import NodeConfig, split_bind
from runtime.http_limits import HeaderDeadline
from runtime.ingress.gateway import PendingResponses
from runtime.internal import InternalRoutes, InternalServer
from runtime.leader_notices import LEADER_CHANGED_PATH, leader_changed_route
from runtime.limits import SizePolicy
from runtime.security.setup import NodeSecurity


class NodeServers:
    """The HTTP servers a node started (``serve``); ``close`` stops them all."""

    def __init__(self, config: NodeConfig, security: NodeSecurity) -> None:
        self.config = config
        self.security = security
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.Server] = []

    async def serve(
        self, app: web.Application, bind: str, *, tls: bool = True, shared: bool = False
    ) -> asyncio.Server:
        """Serve ``app`` on ``bind``; a ``shared`` port is shared by the workers of a machine."""
        host, port = split_bind(bind)
        config = self.config
        # Handlers still running when the node stops get this long to finish (the waiting
        # callers have been answered by then): a fraction of the whole stop's budget.
        grace_s = config.shutdown_timeout_ms / 1000 / 4
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=grace_s,
            keepalive_timeout=config.http_idle_timeout_ms / 1000,
        )
        await runner.setup()
        assert runner.server is not None
        # aiohttp's web.Server is the protocol factory; each connection's protocol is wrapped to
        # close connections that do not send their headers in time.
        factory = HeaderDeadline.factory(runner.server, config.http_header_timeout_ms / 1000)
        try:
            # Workers of one machine share the ingress and admin ports (the kernel spreads the
            # connections over them); each has its own internal port, which identifies it.
            server = await asyncio.get_running_loop().create_server(
                factory,
                host,
                port,
                ssl=self.security.server_ssl_context if tls else None,
                reuse_port=shared and config.workers > 1,
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._servers.append(server)
        self._runners.append(runner)
        return server

    async def close(self) -> None:
        for server in self._servers:
            server.close()  # no new connections; the runners close the open ones
        for runner in self._runners:
            await runner.cleanup()


async def serve_internal(
    servers: NodeServers,
    *,
    secret: bytes,
    advertised: str,
    responses: PendingResponses,
    sql: SqlQueries | None,
    cluster: ClusterAdmin | None,
    limits: SizePolicy,
) -> str:
    """Serve the node-to-node routes on the internal port; returns the advertised URL."""
    routes = InternalRoutes()
    routes.add(RESPONSES_PATH, response_route(responses.respond))
    if sql is not None:
        sql.add_internal_route(routes)
    changed = leader_changed_route(servers.config.partitions, responses.leader_changed)
    routes.add(LEADER_CHANGED_PATH, changed)
    if cluster is not None:
        cluster.install_internal(routes)  # forwarded admin reads, the cluster view
    server = InternalServer(
        routes,
        secret,
        max_body_bytes=limits.message_bytes,  # a relayed result: one entry's worth
        body_timeout_s=servers.config.http_body_timeout_ms / 1000,
    )
    # Plain HTTP: the internal port is for a private network, and every request carries the
    # cluster secret (README "Security"); --tls-cert-file covers the ingress and admin APIs.
    bound = await servers.serve(server.app, servers.config.internal_bind, tls=False)
    port = bound.sockets[0].getsockname()[1]
    host = f"[{advertised}]" if ":" in advertised else advertised
    return f"http://{host}:{port}"
