"""The admin API of a node: the admin server with every route installed (the cluster view and
the reads forwarded to replicas, object state, SQL introspection, versions, subscriptions)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from partition_processor.store_rocksdb import RocksDBStore
from runtime.admin.http import AdminServer, Discover, Snapshots, UpgradeCheck
from runtime.admin.placement import ClusterAdmin
from runtime.admin.sql import Placement as SqlPlacement
from runtime.admin.sql import SqlQueries
from runtime.config import NodeConfig
from runtime.health import NodeHealth
from runtime.ingress.gateway import InvocationGateway
from runtime.internal import InternalClient
from runtime.limits import SizePolicy
from runtime.metadata import Registry
from runtime.peers import PeerClient
from runtime.security.setup import NodeSecurity
from runtime.subscriptions.admin import SubscriptionAdmin
from runtime.subscriptions.spec import KafkaCluster
from runtime.versions.admin import VersionsAdmin
from runtime.worker.replicas import ReplicaWorkers


@dataclass(frozen=True)
class AdminWiring:
    """What the node keeps of its admin API: the server (``app``, ``state``), the cluster view
    and the SQL engine (both also serve routes of the internal port)."""

    admin: AdminServer
    cluster: ClusterAdmin
    sql: SqlQueries


def wire_admin(
    config: NodeConfig,
    *,
    node_id: str,
    registry: Registry,
    store: RocksDBStore,
    gateway: InvocationGateway,
    health: NodeHealth,
    limits: SizePolicy,
    security: NodeSecurity,
    workers: ReplicaWorkers,
    peers: PeerClient | None,
    client: InternalClient | None,
    internal_url: Callable[[], str | None],
    discover: Discover,
    snapshots: Snapshots | None,
    before_metrics: Callable[[], Awaitable[None]],
    upgrade_check: UpgradeCheck,
    placement: SqlPlacement,
    clusters: dict[str, KafkaCluster],
) -> AdminWiring:
    """The admin server of a node, every route installed (not yet serving)."""
    cluster = ClusterAdmin(
        node_id=node_id,
        partitions=config.partitions,
        replication=config.replication,
        store=store,
        replicas=workers,
        peers=peers,
        retry_after_s=config.retry_after_s,
        internal_url=internal_url,
        nodes=registry.nodes,
    )
    admin = AdminServer(
        registry,
        store,
        config.partitions,
        discover=discover,
        gateway=gateway,
        health=health,
        cluster=cluster,
        node_id=node_id,
        limits=limits,
        body_timeout_s=config.http_body_timeout_ms / 1000,
        max_body_bytes=config.admin_max_body_bytes,
        snapshots=snapshots,
        authenticate=security.admin_middleware(),
        seal=security.seal,
        before_metrics=before_metrics,
        upgrade_check=upgrade_check,
    )
    sql = SqlQueries(
        store,
        registry,
        placement,
        partitions=config.partitions,
        node_id=node_id,
        scan_rows_max=config.sql_scan_rows_max,
        result_rows_max=config.sql_result_rows_max,
        timeout_s=config.sql_timeout_ms / 1000,
        memory_mb=config.sql_memory_mb,
        body_timeout_s=config.http_body_timeout_ms / 1000,
        max_body_bytes=config.admin_max_body_bytes,
        client=client,
    )
    sql.install(admin.app)
    VersionsAdmin(registry, store, config.partitions, gateway, pinned=admin.pinned_pairs).install(
        admin.app
    )
    SubscriptionAdmin(
        registry, clusters, default_max_in_flight=config.subscription_max_in_flight
    ).install(admin.app)
    return AdminWiring(admin, cluster, sql)
