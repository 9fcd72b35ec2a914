"""A Cairn node: the only place that wires real I/O together (DESIGN §8).

One process: the log, the RocksDB store, a worker per partition (processor + leader actuators),
the metadata registry, the invoker's gRPC channels, and the ingress and admin HTTP servers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from pathlib import Path

import msgspec
from aiohttp import web

from partition_processor import keys
from partition_processor.actions import RespondToIngress
from partition_processor.store_rocksdb import RocksDBStore
from runtime.admin.http import AdminServer
from runtime.admin.placement import ClusterAdmin
from runtime.admin.sql import Placement as SqlPlacement
from runtime.admin.sql import SqlQueries
from runtime.admin.state import ObjectState
from runtime.clock import Clock, SystemClock
from runtime.cluster import RESPONSES_PATH, ResponseDelivery, response_route
from runtime.console.app import Console
from runtime.console.throughput import Throughput
from runtime.health import NodeHealth
from runtime.http_limits import HeaderDeadline, RequestLimit
from runtime.ingress.gateway import InvocationGateway, PendingResponses
from runtime.ingress.http import IngressServer
from runtime.ingress.validation import quiet_malformed_requests
from runtime.internal import (
    InternalClient,
    InternalRoutes,
    InternalServer,
    advertised_host,
    read_cluster_secret,
)
from runtime.invoker.attempt import StreamTimeouts
from runtime.invoker.channels import ChannelPool
from runtime.invoker.discovery import discover
from runtime.invoker.slots import RunningSlots
from runtime.leader_notices import (
    LEADER_CHANGED_PATH,
    NOTICE_TIMEOUT_S,
    LeaderNotices,
    leader_changed_route,
)
from runtime.limits import SizePolicy
from runtime.log import KafkaLog, LocalLog, Log, LogError
from runtime.log.kafka import BrokerSupport
from runtime.membership import Membership, run_membership
from runtime.metadata import Deployment, Registry
from runtime.metadata_compaction import compact_local_metadata
from runtime.metrics_scrape import refresh_gauges
from runtime.peers import READ_TIMEOUT_S, PeerClient
from runtime.security.headers import DEFAULT_SECRET_HEADERS
from runtime.security.setup import NodeSecurity
from runtime.snapshots.manager import SnapshotInfo, Snapshotter
from runtime.snapshots.repository import SnapshotRef, open_repository
from runtime.subscriptions.admin import SubscriptionAdmin
from runtime.subscriptions.consumer import ConsumerContext
from runtime.subscriptions.manager import SubscriptionManager
from runtime.subscriptions.spec import KafkaCluster
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.versions.admin import VersionsAdmin
from runtime.versions.check import Candidate, CheckReport, check_upgrade
from runtime.worker.partition import PartitionWorker
from runtime.worker.replicas import ReplicaWorkers
from sdk.event_loop import loop_factory

log = logging.getLogger(__name__)

# One node-to-node request (a result delivery) may take this long before it is retried.
_PEER_TIMEOUT_S = 5.0
# A stopping cluster node waits this long to say it left: past it (broker down) it stops anyway
# and the other nodes remove it after the node expiry.
_LEAVE_TIMEOUT_S = 5.0


class NodeConfig(msgspec.Struct, frozen=True):
    data_dir: Path
    ingress_bind: str = "127.0.0.1:8080"
    admin_bind: str = "127.0.0.1:9070"
    log: str = "local"  # "local" | "kafka"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = "cairn"
    # Longest broker-side wait of an idle fetch. Real Kafka answers as soon as data arrives; the
    # Tansu test broker only at this deadline, so tests lower it (DESIGN §10).
    kafka_fetch_max_wait_ms: int = 100
    # Replicas of each topic Cairn creates (fewer when the cluster has fewer brokers), with
    # min.insync.replicas = this - 1 (README "Kafka"). Existing topics are checked, not changed.
    kafka_replication_factor: int = 3
    partitions: int = 24
    node_name: str = "node-1"
    # The size policy (DESIGN §11; README "Limits"): every other byte limit derives from these.
    # A journal entry value (state value, run result, call argument, output) may be as large as
    # a request body, so whatever the ingress accepts can reach the handler and come back.
    ingress_max_body_bytes: int = 10 * 1024 * 1024
    # Object keys, state keys, idempotency keys, names (a store key holds them behind a 2-byte
    # length, so at most 65535).
    max_key_bytes: int = 4096
    # All request headers forwarded to a handler, together.
    max_headers_bytes: int = 64 * 1024
    # Room around one entry value in a log record: ids, keys, headers, framing. A log record is
    # at most ingress_max_body_bytes + this; the Kafka producer's max_request_size and the
    # topic's max.message.bytes are set to match (the brokers' message.max.bytes must allow it).
    log_record_overhead_bytes: int = 256 * 1024
    # A cluster: nodes sharing the Kafka topics split the partitions' leadership through a
    # consumer group; a member that dies loses its partitions after the session timeout.
    cluster: bool = False
    cluster_session_timeout_ms: int = 10_000
    # `cairn server --workers N` (runtime/workers.py): N cluster nodes in N processes of one
    # machine, sharing the ingress and admin ports (SO_REUSEPORT). Each worker's config keeps N.
    workers: int = 1
    # Node-to-node traffic of a cluster (result delivery) goes to each node's internal port,
    # never the admin API. Port 0 binds any free port; peers are told the port actually bound.
    internal_bind: str = "127.0.0.1:5122"
    # The host peers are told to reach this node's internal port at ("": the internal bind's
    # host; a wildcard such as 0.0.0.0 is refused: peers would connect to themselves).
    advertised_address: str = ""
    # File holding the secret every node of the cluster shares (at least 16 bytes); required
    # with ``cluster``: requests to the internal port without it are refused (401).
    cluster_secret_file: str = ""
    # A call (or attach) whose partition answers neither with its result nor to a probe (sent
    # at half of this) within this long gets 503 + Retry-After with its invocation id. Longer
    # than a failover with the default session timeout (10 s + the claim): no 503 for that.
    ingress_leader_timeout_ms: int = 20_000
    # A call waiting for its result re-attaches at every leadership change of its partition,
    # and also this often (a result whose delivery was lost without a leadership change).
    ingress_reattach_interval_ms: int = 30_000
    # Replicas per partition in a cluster: a leader and R-1 standbys apply it, no other node
    # does (capped at the number of nodes; README "A cluster").
    replication: int = 2
    # A stop (SIGTERM, SIGINT) answers waiting callers with 503, ends the invoker streams,
    # flushes the log and the store, and is cut short after this long.
    shutdown_timeout_ms: int = 15_000
    # Bounds (DESIGN §11): past them the ingress answers 429/503 with Retry-After at once.
    # Ingress requests in progress at a time (a call holds its request until the result).
    max_concurrent_requests: int = 4096
    # Attempts with an open stream to an endpoint at a time; further starts wait, in order.
    max_running_invocations: int = 1024
    # Starts waiting for a running slot past which the ingress refuses new requests.
    max_waiting_invocations: int = 8192
    # Requests waiting for (attached to) one invocation's result: ingress calls repeating an
    # idempotency key, attach requests. Past it the new one is answered 429.
    max_attached_requests: int = 256
    # What the 429/503 answers tell clients to wait (the Retry-After header): past a bound, and
    # while the node starts, stops or is unhealthy.
    retry_after_s: int = 1
    # Admin request bodies (a deployment URI, a result relayed by another node of a cluster; the
    # admin server takes the larger of this and a gRPC message's limit).
    admin_max_body_bytes: int = 64 * 1024 * 1024
    # How long a one-way request (/send) waits for the leader's receipt once its Invoke is in
    # the log; past it the answer is a plain "Accepted" (the invocation is durable).
    send_receipt_timeout_ms: int = 30_000
    # How long the discovery of an endpoint (registering a deployment) may take.
    discovery_timeout_ms: int = 10_000
    # HTTP (ingress and admin): a new connection must send its first request's line and headers
    # within the header timeout; an idle keep-alive connection is closed after the idle timeout
    # (which also bounds the headers of later requests on it); a body must arrive within the body
    # timeout.
    http_header_timeout_ms: int = 10_000
    http_idle_timeout_ms: int = 75_000
    http_body_timeout_ms: int = 30_000
    # The runtime→endpoint stream: after this long without progress the runtime asks the attempt
    # to suspend; after the abort timeout more without progress it aborts the attempt (retried
    # with backoff). A handler's ``inactivity_timeout`` / ``abort_timeout`` overrides these.
    inactivity_timeout_ms: int = 60_000
    abort_timeout_ms: int = 60_000
    # When starts wait for a running slot, attempts quiet for this long are asked to suspend, so
    # an invocation waiting on another one on this node frees its slot (no deadlock).
    idle_suspend_ms: int = 1_000
    # An attempt of a virtual object or workflow starts with the key's state up to this many
    # bytes (names + values), so the handler's reads need no log round trip; past it the SDK
    # reads the keys it was not sent lazily. 0: every read is lazy.
    eager_state_max_bytes: int = 256 << 10
    # An attempt's effects that nobody waits for (state writes, eagerly answered reads, the
    # output) wait this long for one that somebody waits for (the end, a lazy read, a call...)
    # and share its log append; 0: each is appended at once.
    invoker_coalesce_ms: int = 5
    # gRPC keepalive pings on the channels to endpoints: a silent peer (a stopped process, a dead
    # host) fails its streams after time + timeout.
    grpc_keepalive_time_ms: int = 20_000
    grpc_keepalive_timeout_ms: int = 10_000
    # Snapshots (README "Snapshots and trimming"): "" disables them (and so trimming);
    # file:///dir or s3://bucket/prefix enables them. Every partition's leader snapshots it each
    # ``snapshot_interval_records`` applied records (0: only on demand).
    snapshot_repository: str = ""
    snapshot_interval_records: int = 10_000
    # Endpoint of an S3-compatible store (MinIO, a local test server); "" means AWS_ENDPOINT_URL
    # or AWS itself.
    snapshot_s3_endpoint: str = ""
    # A cluster node publishes its applied positions this often (its heartbeat); a partition is
    # trimmed only below what every node that reported within 3 periods has applied.
    applied_positions_interval_ms: int = 30_000
    # A standby applies its partitions at most this often (0: as records arrive): fewer, bigger
    # batches of the same records (issue 7, CPU per node); a claim (failover) ends the wait.
    standby_apply_interval_ms: int = 100
    # A cluster node of which nothing was heard this long is removed from the metadata (a node
    # that stops cleanly removes itself at once).
    cluster_node_expiry_ms: int = 300_000
    # Segment size of the local log: trimming deletes whole segments, so smaller segments free
    # space sooner (and cost more files).
    local_log_segment_bytes: int = 64 << 20
    # Kafka clusters that subscriptions read (name -> bootstrap), with optional aiokafka client
    # properties per cluster (SASL/TLS). With --log kafka, the log's own cluster is also
    # available under ``kafka_log_cluster_name``. Subscription consumers use the cluster session
    # timeout for their groups too.
    kafka_clusters: dict[str, str] = {}
    kafka_cluster_properties: dict[str, dict[str, str]] = {}
    kafka_log_cluster_name: str = "cairn"
    # Default of a subscription's ``max.in.flight.records`` option.
    subscription_max_in_flight: int = 1000
    # Security (README, Security). Bearer tokens of the admin and ingress servers, one per line
    # (several: a rotation); "" leaves a server open (it binds 127.0.0.1 by default).
    admin_token_file: str = ""
    ingress_token_file: str = ""
    # TLS of the ingress and admin servers; "" serves plain HTTP.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # TLS deployments (grpcs://, https://): the CA bundle to trust ("" = the system's roots) and
    # an optional client certificate.
    deployment_ca_file: str = ""
    deployment_client_cert_file: str = ""
    deployment_client_key_file: str = ""
    # An ed25519 private key (PEM): every call to an endpoint is signed with it ("" = unsigned).
    request_signing_key_file: str = ""
    # Request headers passed to handlers but stored only encrypted (with the header key) and
    # shown redacted. The key file is created in the data dir unless given (a cluster's nodes
    # must share one).
    secret_headers: tuple[str, ...] = DEFAULT_SECRET_HEADERS
    header_key_file: str = ""
    # SQL introspection (README "SQL introspection"): a query loads at most this many rows of
    # the tables it names (past it: 413), and answers at most the result bound (then
    # ``"truncated": true``).
    sql_scan_rows_max: int = 200_000
    sql_result_rows_max: int = 10_000
    # A query running longer is interrupted (400); the engine's memory for one query.
    sql_timeout_ms: int = 30_000
    sql_memory_mb: int = 256
    # The process's event loop (sdk/event_loop.py): "auto" is uvloop when installed, which
    # costs less CPU per request than asyncio's loop (issue 10); "asyncio" forces the latter.
    event_loop: str = "auto"

    def __post_init__(self) -> None:
        if not 0 < self.max_key_bytes <= keys.MAX_TEXT_BYTES:
            raise ValueError(f"max_key_bytes must be in 1..{keys.MAX_TEXT_BYTES}")
        if self.ingress_max_body_bytes < 1:
            raise ValueError("ingress_max_body_bytes must be positive")
        if self.log_record_overhead_bytes < self.max_headers_bytes + 8 * self.max_key_bytes:
            raise ValueError("log_record_overhead_bytes must hold the headers and keys")
        if self.shutdown_timeout_ms < 1:
            raise ValueError("shutdown_timeout_ms must be positive")
        if self.ingress_leader_timeout_ms < 1 or self.ingress_reattach_interval_ms < 1:
            raise ValueError("the ingress leader timeout and re-attach interval must be positive")
        if self.replication < 1 or self.standby_apply_interval_ms < 0:
            raise ValueError("replication must be at least 1, standby_apply_interval_ms >= 0")
        if self.eager_state_max_bytes < 0 or self.invoker_coalesce_ms < 0:
            raise ValueError("eager_state_max_bytes and invoker_coalesce_ms must not be negative")
        if self.subscription_max_in_flight < 1:
            raise ValueError("subscription_max_in_flight must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.kafka_replication_factor < 1:
            raise ValueError("kafka_replication_factor must be at least 1")
        if self.cluster_node_expiry_ms <= 2 * self.applied_positions_interval_ms:
            raise ValueError(
                "cluster_node_expiry_ms must exceed twice applied_positions_interval_ms "
                "(a node's heartbeat)"
            )
        loop_factory(self.event_loop)  # ValueError names a bad choice
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("--tls-cert-file and --tls-key-file go together")

    def size_policy(self) -> SizePolicy:
        record = self.ingress_max_body_bytes + self.log_record_overhead_bytes
        return SizePolicy(
            body_bytes=self.ingress_max_body_bytes,
            entry_bytes=self.ingress_max_body_bytes,
            key_bytes=self.max_key_bytes,
            headers_bytes=self.max_headers_bytes,
            record_bytes=record,
            # A replayed call entry holds its argument and its result: two values.
            message_bytes=record + self.ingress_max_body_bytes,
            # Within one message next to the replayed journal's first entries.
            eager_state_bytes=min(self.eager_state_max_bytes, self.ingress_max_body_bytes),
        )


def config_default(name: str) -> object:
    """The default of ``NodeConfig.<name>`` (the CLI's flags take their defaults from here)."""
    field = next(f for f in msgspec.structs.fields(NodeConfig) if f.name == name)
    return field.default


def _local_metadata_dir(config: NodeConfig) -> Path:
    return config.data_dir / "log" / "metadata"


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {bind!r}")
    return host, int(port)


class Node:
    def __init__(self, config: NodeConfig, *, clock: Clock | None = None) -> None:
        """``clock``: what the partition leaders' timers read (the wall clock by default;
        ``sdk.testing`` gives one it moves forward)."""
        self.config = config
        self._clock: Clock = clock or SystemClock()
        # The incarnation suffix tells this process's leadership announcements from a previous
        # run's on the same data dir.
        self.node_id = f"{config.node_name}/{uuid.uuid4().hex[:8]}"
        if config.cluster and config.log != "kafka":
            raise ValueError("a cluster shares its log: use --log kafka")
        # First: every long-running task of the node runs under it, the LocalLog writers too.
        self._supervisor = Supervisor()
        self._log, self._metadata_log = self._open_logs(config, self._supervisor)
        self._store: RocksDBStore | None = None
        self.limits = config.size_policy()
        # Reads every key, token and certificate file now: a bad one stops the node at once.
        self.security = NodeSecurity.load(config)
        self._channels = ChannelPool(
            self.limits.message_bytes,
            keepalive_time_ms=config.grpc_keepalive_time_ms,
            keepalive_timeout_ms=config.grpc_keepalive_timeout_ms,
            security=self.security.endpoints,
        )
        self._slots = RunningSlots(
            config.max_running_invocations,
            idle_suspend_s=config.idle_suspend_ms / 1000,
            supervisor=self._supervisor,
        )
        self._timeouts = StreamTimeouts(
            config.inactivity_timeout_ms, config.abort_timeout_ms, config.invoker_coalesce_ms
        )
        self._responses = PendingResponses()
        self.registry = Registry(self._metadata_log)
        self.workers = ReplicaWorkers(self._new_worker, self._supervisor, self.node_id)
        self.health = NodeHealth(
            self._supervisor,
            self.workers.owns,
            retry_after_s=config.retry_after_s,
            log_problems=self._log_problems,
        )
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.Server] = []
        self._stopped = False
        self._delivery: ResponseDelivery | None = None
        self._client: InternalClient | None = None
        self._sql: SqlQueries | None = None
        # Reads and edits object state through the log (``patch_state``): the admin API's state
        # routes, and in-process callers such as the web console. Made in ``start``.
        self.object_state: ObjectState | None = None
        self._notices: LeaderNotices | None = None
        # This node's advertised internal URL, once its internal port is bound (a cluster).
        self.internal_url: str | None = None
        if config.cluster:
            self._secret = read_cluster_secret(config.cluster_secret_file)
            self._advertised = advertised_host(
                config.advertised_address, split_bind(config.internal_bind)[0]
            )
            client = InternalClient(self.registry, self._secret, timeout_s=_PEER_TIMEOUT_S)
            self._client = client
            self._delivery = ResponseDelivery(client, self._supervisor)
            notices = InternalClient(self.registry, self._secret, timeout_s=NOTICE_TIMEOUT_S)
            self._notices = LeaderNotices(
                notices, self._supervisor, self.node_id, self.registry.nodes
            )
        self._membership: Membership | None = None  # (made in start: it needs the loop)
        self._peers = (
            PeerClient(InternalClient(self.registry, self._secret, timeout_s=READ_TIMEOUT_S))
            if config.cluster
            else None
        )
        self._cluster: ClusterAdmin | None = None  # (made in start: it reads the store)
        self._snapshotter: Snapshotter | None = None
        self._subscriptions: SupervisedTask | None = None
        self._membership_task: SupervisedTask | None = None

    @staticmethod
    def _open_logs(config: NodeConfig, supervisor: Supervisor) -> tuple[Log, Log]:
        if config.log == "local":
            root = config.data_dir / "log"
            partitions = LocalLog(
                root / "partitions",
                config.partitions,
                segment_bytes=config.local_log_segment_bytes,
                supervisor=supervisor,
            )
            return partitions, LocalLog(_local_metadata_dir(config), 1, supervisor=supervisor)
        if config.log == "kafka":
            prefix = config.kafka_topic_prefix
            wait = timedelta(milliseconds=config.kafka_fetch_max_wait_ms)
            record_bytes = config.size_policy().record_bytes
            support = BrokerSupport()  # idempotence is detected once, by the first to start
            replication = config.kafka_replication_factor
            return (
                KafkaLog(
                    config.kafka_bootstrap,
                    f"{prefix}.log",
                    config.partitions,
                    fetch_max_wait=wait,
                    max_record_bytes=record_bytes,
                    replication_factor=replication,
                    support=support,
                ),
                KafkaLog(
                    config.kafka_bootstrap,
                    f"{prefix}.metadata",
                    1,
                    fetch_max_wait=wait,
                    replication_factor=replication,
                    compacted=True,
                    support=support,
                ),
            )
        raise ValueError(f"unknown log {config.log!r}: expected 'local' or 'kafka'")

    async def check_upgrade(
        self, deployment: Deployment, candidates: list[Candidate]
    ) -> CheckReport:
        """Replay the unfinished invocations of ``deployment``'s services (``candidates``, read
        from every partition of the cluster by the admin API) against it (README, Versions); a
        journal silent for the inactivity timeout counts as failed."""
        return await check_upgrade(
            deployment,
            candidates,
            self._channels,
            timeout_s=self.config.inactivity_timeout_ms / 1000,
        )

    async def discover(self, uri: str) -> Deployment:
        """Discover the deployment at ``uri`` within the configured timeout."""
        return await discover(
            uri,
            timeout_s=self.config.discovery_timeout_ms / 1000,
            security=self.security.endpoints,
        )

    @property
    def ready(self) -> bool:
        return self.health.phase == "serving"

    def _kafka_logs(self) -> list[KafkaLog]:
        return [x for x in (self._log, self._metadata_log) if isinstance(x, KafkaLog)]

    def _log_problems(self) -> list[str]:
        """Why a log cannot be used now (its broker does not answer): README "Broker outages"."""
        return [x.reachability.reason for x in self._kafka_logs() if x.reachability.reason]

    def _new_worker(self, partition: int, owned: bool) -> PartitionWorker:
        assert self._store is not None
        return PartitionWorker(
            partition,
            log_=self._log,
            store=self._store,
            node_id=self.node_id,
            registry=self.registry,
            channels=self._channels,
            respond=self._respond,
            limits=self.limits,
            supervisor=self._supervisor,
            slots=self._slots,
            timeouts=self._timeouts,
            owned=owned,
            clock=self._clock,
            snapshots=self._snapshotter,
            on_leader_change=self._leader_changed,
            standby_pace_s=self.config.standby_apply_interval_ms / 1000,
        )

    async def _refresh_metrics(self) -> None:
        """The gauges read at scrape time (README "Metrics")."""
        if self._store is None:
            return
        workers = list(self.workers.by_partition.values())
        await refresh_gauges(
            self._store,
            self._log,
            leading={w.partition for w in workers if w.is_leader},
            applied=lambda: {w.partition: w.processor.fsm.applied_lsn for w in workers},
        )

    def applied_partitions(self) -> frozenset[int]:
        """The partitions this node applies (keeps a store copy of): all on a single node, its
        replicas' in a cluster (DESIGN §8)."""
        if not self.config.cluster:
            return frozenset(range(self.config.partitions))
        return frozenset(p for p in range(self.config.partitions) if self.workers.applies(p))

    def _replicas(self, partition: int) -> list[str]:
        """Other nodes applying ``partition`` (its leader first), to ask for its rows."""
        placement = self.workers.placement
        if placement is None or partition >= len(placement.replicas):
            return []
        return [n for n in placement.replicas[partition] if n != self.node_id]

    async def start(self) -> None:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        await self._log.start()
        if config.log == "local":
            # Kafka compacts the metadata topic; the embedded log is compacted here, unopened.
            await compact_local_metadata(_local_metadata_dir(config))
        await self._metadata_log.start()
        for each in self._kafka_logs():
            self._supervisor.spawn(
                f"log-reachability/{each.topic}", each.reachability.run, kind="log-reachability"
            )
        self._store = RocksDBStore(config.data_dir / "store")
        self._membership = (
            Membership(
                node_id=self.node_id,
                bootstrap=config.kafka_bootstrap,
                topic_prefix=config.kafka_topic_prefix,
                partitions=config.partitions,
                replication=config.replication,
                session_timeout_ms=config.cluster_session_timeout_ms,
                positions_interval_ms=config.applied_positions_interval_ms,
                registry=self.registry,
                workers=self.workers,
            )
            if config.cluster
            else None
        )
        await self.registry.start(self._supervisor)
        if config.snapshot_repository:
            self._snapshotter = Snapshotter(
                repository=open_repository(
                    config.snapshot_repository, s3_endpoint=config.snapshot_s3_endpoint or None
                ),
                store=self._store,
                log_=self._log,
                partitions=config.partitions,
                node_id=self.node_id,
                interval_records=config.snapshot_interval_records,
                trim_bound=self._membership.trim_bound if self._membership else None,
            )
        gateway = InvocationGateway(
            self._log,
            self.node_id,
            self._responses,
            max_record_bytes=self.limits.record_bytes,
            max_attached=config.max_attached_requests,
            receipt_timeout_s=config.send_receipt_timeout_ms / 1000,
            leader_timeout_s=config.ingress_leader_timeout_ms / 1000,
            reattach_interval_s=config.ingress_reattach_interval_ms / 1000,
        )
        limit = RequestLimit(
            config.max_concurrent_requests,
            config.retry_after_s,
            overloaded=self._overloaded,
            # Attach, output and awakeable requests start nothing new: they help drain a backlog.
            starts_work=lambda request: not request.path.startswith("/restate/"),
            exempt=frozenset({"/restate/health"}),
        )
        ingress = IngressServer(
            self.registry,
            gateway,
            health=self.health,
            limits=self.limits,
            limit=limit,
            body_timeout_s=config.http_body_timeout_ms / 1000,
            retry_after_s=config.retry_after_s,
            authenticate=self.security.ingress_middleware(),
            seal=self.security.seal,
        )
        self._cluster = ClusterAdmin(
            node_id=self.node_id,
            partitions=config.partitions,
            replication=config.replication,
            store=self._store,
            replicas=self.workers,
            peers=self._peers,
            retry_after_s=config.retry_after_s,
            internal_url=lambda: self.internal_url,
            nodes=self.registry.nodes,
        )
        admin = AdminServer(
            self.registry,
            self._store,
            config.partitions,
            discover=self.discover,
            gateway=gateway,
            health=self.health,
            cluster=self._cluster,
            node_id=self.node_id,
            limits=self.limits,
            body_timeout_s=config.http_body_timeout_ms / 1000,
            max_body_bytes=config.admin_max_body_bytes,
            snapshots=self if self._snapshotter is not None else None,
            authenticate=self.security.admin_middleware(),
            seal=self.security.seal,
            before_metrics=self._refresh_metrics,
            upgrade_check=self.check_upgrade,
        )
        self.object_state = admin.state
        self._sql = SqlQueries(
            self._store,
            self.registry,
            SqlPlacement(self.applied_partitions, self._replicas),
            partitions=config.partitions,
            node_id=self.node_id,
            scan_rows_max=config.sql_scan_rows_max,
            result_rows_max=config.sql_result_rows_max,
            timeout_s=config.sql_timeout_ms / 1000,
            memory_mb=config.sql_memory_mb,
            body_timeout_s=config.http_body_timeout_ms / 1000,
            max_body_bytes=config.admin_max_body_bytes,
            client=self._client,
        )
        self._sql.install(admin.app)
        VersionsAdmin(
            self.registry, self._store, config.partitions, gateway, pinned=admin.pinned_pairs
        ).install(admin.app)
        quiet_malformed_requests()
        clusters = self.kafka_clusters()
        SubscriptionAdmin(
            self.registry, clusters, default_max_in_flight=config.subscription_max_in_flight
        ).install(admin.app)
        # The web console (README "Web console"): pages under /ui of the admin API.
        throughput = Throughput()
        Console(
            registry=self.registry,
            cluster=self._cluster,
            sql=self._sql,
            gateway=gateway,
            store=self._store,
            partitions=config.partitions,
            retry_after_s=config.retry_after_s,
            throughput=throughput,
            object_state=admin.state,
        ).install(admin.app)
        self._supervisor.spawn("console-throughput", throughput.run, affects_health=False)
        await self._serve(ingress.app, config.ingress_bind, shared=True)
        await self._serve(admin.app, config.admin_bind, shared=True)
        if config.cluster:
            await self._join()
        if self._membership is not None:
            # Replicas of the partitions the group's placement gives this node; leader of some.
            await self._membership.join(self._supervisor)
            self._membership_task = self._supervisor.spawn("membership", self._heartbeat)
        else:
            for partition in range(config.partitions):
                self.workers.start(partition, owned=True)
            await asyncio.gather(*(w.caught_up.wait() for w in self.workers.by_partition.values()))
        subscriptions = SubscriptionManager(
            clusters,
            ConsumerContext(
                registry=self.registry,
                log=self._log,
                node_id=self.node_id,
                responses=self._responses,
                session_timeout_ms=config.cluster_session_timeout_ms,
                fetch_max_wait_ms=config.kafka_fetch_max_wait_ms,
                default_max_in_flight=config.subscription_max_in_flight,
                limits=self.limits,
                seal=self.security.seal,
            ),
            self._supervisor,
        )
        # Node-wide, but not a task health depends on: a source cluster that is down must not
        # take the node (or every node: all run every subscription) out of service.
        self._subscriptions = self._supervisor.spawn(
            "subscriptions", subscriptions.run, affects_health=False
        )
        self.health.phase = "serving"
        log.info(
            "node %s ready: %d partitions on the %s log",
            self.node_id,
            config.partitions,
            config.log,
        )

    def _overloaded(self) -> str | None:
        """Why the ingress must refuse new work now (None: it need not)."""
        waiting = self._slots.waiting
        if waiting > self.config.max_waiting_invocations:
            return f"{waiting} invocations wait to run on this node"
        return None

    def kafka_clusters(self) -> dict[str, KafkaCluster]:
        """The Kafka clusters subscriptions can read, by name."""
        config = self.config
        bootstraps = dict(config.kafka_clusters)
        if config.log == "kafka":
            bootstraps.setdefault(config.kafka_log_cluster_name, config.kafka_bootstrap)
        return {
            name: KafkaCluster(name, bootstrap, config.kafka_cluster_properties.get(name, {}))
            for name, bootstrap in bootstraps.items()
        }

    async def _serve_internal(self) -> str:
        """Serve the node-to-node routes on the internal port; returns the advertised URL."""
        routes = InternalRoutes()
        routes.add(RESPONSES_PATH, response_route(self._responses.respond))
        if self._sql is not None:
            self._sql.add_internal_route(routes)
        changed = leader_changed_route(self.config.partitions, self._responses.leader_changed)
        routes.add(LEADER_CHANGED_PATH, changed)
        if self._cluster is not None:
            self._cluster.install_internal(routes)  # forwarded admin reads, the cluster view
        server = InternalServer(
            routes,
            self._secret,
            max_body_bytes=self.limits.message_bytes,  # a relayed result: one entry's worth
            body_timeout_s=self.config.http_body_timeout_ms / 1000,
        )
        # Plain HTTP: the internal port is for a private network, and every request carries the
        # cluster secret (README "Security"); --tls-cert-file covers the ingress and admin APIs.
        bound = await self._serve(server.app, self.config.internal_bind, tls=False)
        port = bound.sockets[0].getsockname()[1]
        host = f"[{self._advertised}]" if ":" in self._advertised else self._advertised
        return f"http://{host}:{port}"

    async def _serve(
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

    async def _join(self) -> None:
        if self.internal_url is None:
            self.internal_url = await self._serve_internal()
        scheme = "https" if self.config.tls_cert_file else "http"
        admin_url = f"{scheme}://{self.config.admin_bind}"
        await self.registry.join(self.node_id, admin_url, self.internal_url)

    async def _heartbeat(self) -> None:
        """Heartbeat with this node's applied positions; remove peers silent past the expiry."""
        await run_membership(
            self.registry,
            self.node_id,
            positions=lambda: self.workers.applied(self.config.partitions),
            rejoin=self._join,
            interval_s=self.config.applied_positions_interval_ms / 1000,
            expiry_s=self.config.cluster_node_expiry_ms / 1000,
        )

    async def create_snapshots(self, partition: int | None) -> list[SnapshotInfo]:
        """Snapshot ``partition`` (or every partition this node leads) now."""
        if self._snapshotter is None:
            raise LookupError("no snapshot repository is configured (--snapshot-repository)")
        leading = self.workers.leading()
        if partition is not None and partition not in leading:
            raise LookupError(f"partition {partition} is not led by this node")
        targets = [partition] if partition is not None else leading
        tasks = [self._snapshotter.take(p) for p in targets]
        return list(await asyncio.gather(*tasks))

    async def list_snapshots(self, partition: int | None) -> list[SnapshotRef]:
        if self._snapshotter is None:
            raise LookupError("no snapshot repository is configured (--snapshot-repository)")
        return await self._snapshotter.repository.list(partition)

    async def _leave(self) -> None:
        """Tell the cluster this node left (a stop that cannot say so expires later)."""
        try:
            await asyncio.wait_for(self.registry.leave(self.node_id), _LEAVE_TIMEOUT_S)
        except (LogError, TimeoutError) as exc:
            log.warning("could not publish that this node left the cluster: %r", exc)

    def _leader_changed(self, partition: int) -> None:
        """An applied announcement moved ``partition`` to a new leader: the calls waiting on it
        here re-attach; if the new leader is this node, the other nodes are told too (those
        that do not apply the partition never see the announcement)."""
        self._responses.leader_changed(partition)
        worker = self.workers.by_partition.get(partition)
        # (Not while replaying history: an old epoch of this node's is no news.)
        if self._notices is None or worker is None or not worker.synced.is_set():
            return
        fsm = worker.processor.fsm
        if fsm.leader_node == self.node_id:
            self._notices.announce(partition, fsm.leader_epoch)

    def _respond(self, action: RespondToIngress) -> None:
        if action.sink.node == self.node_id:
            self._responses.respond(action)
        elif self._delivery is not None:
            self._delivery.deliver(action)  # held by another node of the cluster
        # Otherwise a sink of an earlier incarnation: that request is gone with it.

    async def stop(self) -> None:
        """Stop gracefully. Idempotent; the caller bounds it (``shutdown_timeout_ms``).

        New requests get 503 from now on, callers still waiting for a result get 503 with the
        invocation id (the invocation goes on; they attach later), then the invoker streams end
        with the partition tasks, and the log and store are flushed and closed.
        """
        if self._stopped:
            return
        self._stopped = True
        self.health.phase = "stopping"
        if self._subscriptions is not None:
            # Before the waiters are answered: no record is taken in while the node stops, and
            # the consumers leave their groups, so their partitions move at once.
            await self._subscriptions.stop()
        self._responses.shut_down()
        if self._membership is not None:
            await self._membership.leave()  # leave the group: the partitions move at once
        if self._membership_task is not None:
            await self._membership_task.stop()  # no heartbeat after the node said it left
        if self.config.cluster:
            await self._leave()
        if self._delivery is not None:
            await self._delivery.close()
        if self._notices is not None:
            await self._notices.close()
        if self._peers is not None:
            await self._peers.close()
        for server in self._servers:
            server.close()  # no new connections; the runners close the open ones
        for runner in self._runners:
            await runner.cleanup()
        await self._supervisor.shutdown()
        if self._snapshotter is not None:
            await self._snapshotter.close()
        await self.registry.stop()
        await self._slots.close()
        await self._channels.close()
        await self._log.close()
        await self._metadata_log.close()
        if self._store is not None:
            self._store.close()
