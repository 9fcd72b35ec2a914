"""``NodeConfig``: every setting of a node and the one home of its defaults (the CLI's flags read
them through ``config_default``), and ``split_bind`` for its HOST:PORT settings."""

from __future__ import annotations

from pathlib import Path

import msgspec

from partition_processor import keys
from runtime.limits import SizePolicy
from runtime.security.headers import DEFAULT_SECRET_HEADERS
from sdk.event_loop import loop_factory


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


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {bind!r}")
    return host, int(port)
