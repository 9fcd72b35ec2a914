"""The flags of ``cairn server`` and ``cairn dev`` and the ``NodeConfig`` they make.

Every flag can also be given as an environment variable ``CAIRN_<FLAG>`` (for example
``CAIRN_DATA_DIR``, ``CAIRN_LOG``, ``CAIRN_KAFKA_BOOTSTRAP``); a flag on the command line wins.
Defaults come from ``NodeConfig`` (``config_default``), their one home.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from runtime.config import NodeConfig, config_default, split_bind
from runtime.ingress.durations import InvalidDuration, parse_duration_ms
from runtime.internal import advertised_host, read_cluster_secret
from runtime.logs import LOG_FORMATS
from runtime.security.flags import add_security_flags, security_options
from runtime.snapshots.repository import open_repository
from runtime.subscriptions.spec import parse_cluster, parse_cluster_property, parse_clusters
from sdk.event_loop import EVENT_LOOPS

# Integer limits of the node (DESIGN §11): flag ``--max-concurrent-requests``, environment
# variable ``CAIRN_MAX_CONCURRENT_REQUESTS``, default from ``NodeConfig``.
_LIMITS = {
    "max_concurrent_requests": "ingress requests in progress at once (past it: 429)",
    "max_running_invocations": "invocation attempts running at once (more wait in order)",
    "max_waiting_invocations": "waiting starts past which the ingress answers 503",
    "max_attached_requests": "requests waiting for one invocation's result (past it: 429)",
    "retry_after_s": "the Retry-After of 429/503 answers (bounds, starting, stopping, health)",
    "admin_max_body_bytes": "largest admin request body (at least a gRPC message's limit)",
    "send_receipt_timeout_ms": "a /send waits this long for its receipt, then answers Accepted",
    "discovery_timeout_ms": "discovery of a deployment's endpoint must answer within this",
    "http_header_timeout_ms": "a new connection must send its request headers within this",
    "http_idle_timeout_ms": "idle keep-alive connections close after this",
    "http_body_timeout_ms": "a request body must arrive within this (else 408)",
    "inactivity_timeout_ms": "an attempt without progress for this long is asked to suspend",
    "abort_timeout_ms": "... and aborted (then retried) after this long more",
    "idle_suspend_ms": "when starts wait for a slot, attempts quiet this long are asked to suspend",
    "eager_state_max_bytes": "state sent with an attempt's start (0: every read is lazy)",
    "invoker_coalesce_ms": "effects nobody waits for wait this long to share an append",
    "grpc_keepalive_time_ms": "keepalive ping interval on the channels to endpoints",
    "grpc_keepalive_timeout_ms": "a keepalive ping unanswered this long fails the channel",
    "sql_scan_rows_max": "rows a SQL query may load from the stores (past it: 413)",
    "sql_result_rows_max": "rows a SQL query answers at most (then truncated)",
    "sql_timeout_ms": "a SQL query running longer is interrupted (400)",
    "sql_memory_mb": "memory of the engine running one SQL query",
}

# Limits where 0 means "off".
_ZERO_ALLOWED = frozenset({"eager_state_max_bytes", "invoker_coalesce_ms"})


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CAIRN_{name}", default)


def _env_or_default(name: str) -> str:
    """``CAIRN_<NAME>``, else the default of ``NodeConfig.<name>`` (its one home)."""
    return _env(name.upper(), str(config_default(name)))


def _add_node_flags(parser: argparse.ArgumentParser, *, data_dir: str) -> None:
    parser.add_argument("--data-dir", default=_env("DATA_DIR", data_dir))
    parser.add_argument("--ingress-bind", default=_env_or_default("ingress_bind"))
    parser.add_argument("--admin-bind", default=_env_or_default("admin_bind"))
    parser.add_argument("--log", choices=["local", "kafka"], default=_env_or_default("log"))
    parser.add_argument("--kafka-bootstrap", default=_env_or_default("kafka_bootstrap"))
    parser.add_argument("--kafka-topic-prefix", default=_env_or_default("kafka_topic_prefix"))
    parser.add_argument(
        "--kafka-fetch-max-wait-ms",
        type=int,
        default=_env_or_default("kafka_fetch_max_wait_ms"),
    )
    parser.add_argument(
        "--kafka-replication-factor",
        type=int,
        default=_env_or_default("kafka_replication_factor"),
        help="replicas of the topics Cairn creates, at most the broker count; "
        "min.insync.replicas is one less (default %(default)s)",
    )
    parser.add_argument("--partitions", type=int, default=_env_or_default("partitions"))
    parser.add_argument("--node-name", default=_env_or_default("node_name"))
    for name in ("ingress_max_body_bytes", "max_key_bytes"):
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=_env_or_default(name),
            help="size policy (README, Limits)",
        )
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=_env("LOG_FORMAT", "text"),
        help="text lines (default) or one JSON object per line (README, Logs)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        default=_env("CLUSTER", "") not in ("", "0", "false"),
        help="share the Kafka topics with other nodes; leadership moves through a group",
    )
    parser.add_argument(
        "--cluster-session-timeout-ms",
        type=int,
        default=_env_or_default("cluster_session_timeout_ms"),
        help="how long a silent node keeps its partitions (and its subscriptions' partitions)",
    )
    parser.add_argument(
        "--applied-positions-interval-ms",
        type=int,
        default=_env_or_default("applied_positions_interval_ms"),
        help="a cluster node publishes its applied positions (its heartbeat) this often "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--standby-apply-interval-ms",
        type=int,
        default=_env_or_default("standby_apply_interval_ms"),
        help="a standby applies its partitions at most this often, in bigger batches; 0: as "
        "records arrive (default %(default)s)",
    )
    parser.add_argument(
        "--cluster-node-expiry-ms",
        type=int,
        default=_env_or_default("cluster_node_expiry_ms"),
        help="a cluster node silent this long is removed from the metadata (default %(default)s)",
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=_env_or_default("event_loop"),
        help="the node's event loop: auto (uvloop when installed), uvloop or asyncio "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--internal-bind",
        default=_env_or_default("internal_bind"),
        help="HOST:PORT of the node-to-node API of a cluster (port 0: any free port, "
        "advertised with its real number)",
    )
    parser.add_argument(
        "--advertised-address",
        default=_env_or_default("advertised_address"),
        help="host name or IP address peers reach this node's internal port at "
        "(default: the --internal-bind host; never a wildcard such as 0.0.0.0)",
    )
    parser.add_argument(
        "--cluster-secret-file",
        default=_env_or_default("cluster_secret_file"),
        help="file holding the secret shared by every node of the cluster (required with "
        "--cluster; at least 16 bytes)",
    )
    parser.add_argument(
        "--replication",
        type=int,
        default=_env_or_default("replication"),
        help="replicas per partition in a cluster (a leader and R-1 standbys; capped at the "
        "number of nodes)",
    )
    parser.add_argument(
        "--kafka-cluster",
        action="append",
        default=[],
        metavar="NAME=BOOTSTRAP",
        help="a Kafka cluster subscriptions can read (repeatable; env CAIRN_KAFKA_CLUSTERS="
        "'a=h1:9092,b=h2:9092')",
    )
    parser.add_argument(
        "--kafka-cluster-property",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="an aiokafka client property of a cluster, e.g. a:security_protocol=SASL_SSL "
        "(repeatable; env CAIRN_KAFKA_CLUSTER_PROPERTIES, separated by ';')",
    )
    parser.add_argument(
        "--subscription-max-in-flight",
        type=int,
        default=_env_or_default("subscription_max_in_flight"),
        help="default max.in.flight.records of a subscription",
    )
    parser.add_argument(
        "--ingress-leader-timeout",
        default=_env("INGRESS_LEADER_TIMEOUT", ""),
        help="a call whose partition has no leader taking it gets 503 + Retry-After after "
        "this long, in seconds or e.g. 20s "
        f"(default {_default_ms('ingress_leader_timeout_ms') / 1000:g} s)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        default=_env("SHUTDOWN_TIMEOUT", ""),
        help="longest graceful stop on SIGTERM/SIGINT, in seconds or e.g. 15s "
        f"(default {_default_shutdown_timeout_ms() / 1000:g} s)",
    )
    for name, text in _LIMITS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=_env_or_default(name),
            help=f"{text} (default %(default)s)",
        )
    _add_snapshot_flags(parser)
    add_security_flags(parser)


def _add_snapshot_flags(parser: argparse.ArgumentParser) -> None:
    defaults = NodeConfig(data_dir=Path("."))
    parser.add_argument(
        "--snapshot-repository",
        default=_env("SNAPSHOT_REPOSITORY", defaults.snapshot_repository),
        help="file:///dir or s3://bucket/prefix: where partition snapshots go (enables trimming)",
    )
    parser.add_argument(
        "--snapshot-interval-records",
        type=int,
        default=_env("SNAPSHOT_INTERVAL_RECORDS", str(defaults.snapshot_interval_records)),
        help="snapshot a partition every N applied records (0: only on demand)",
    )
    parser.add_argument(
        "--snapshot-s3-endpoint",
        default=_env("SNAPSHOT_S3_ENDPOINT", defaults.snapshot_s3_endpoint),
        help="URL of an S3-compatible store (default: AWS_ENDPOINT_URL, else AWS)",
    )
    parser.add_argument(
        "--local-log-segment-bytes",
        type=int,
        default=_env("LOCAL_LOG_SEGMENT_BYTES", str(defaults.local_log_segment_bytes)),
        help="segment file size of the local log (trimming deletes whole segments)",
    )


def _check_snapshot_flags(args: argparse.Namespace) -> None:
    if args.local_log_segment_bytes < 1:
        raise SystemExit("cairn: --local-log-segment-bytes must be at least 1")
    if args.snapshot_interval_records < 0:
        raise SystemExit("cairn: --snapshot-interval-records must be 0 or more")
    if args.snapshot_repository:
        try:
            open_repository(args.snapshot_repository)
        except ValueError as exc:
            raise SystemExit(f"cairn: --snapshot-repository: {exc}") from exc


def _default_ms(name: str) -> int:
    default = config_default(name)
    assert isinstance(default, int)
    return default


def _default_shutdown_timeout_ms() -> int:
    return _default_ms("shutdown_timeout_ms")


def _timeout_ms(flag: str, raw: str) -> int | None:
    """A timeout flag: seconds (``15``, ``2.5``) or a duration (``15s``); None = default."""
    if raw == "":
        return None
    try:
        ms = round(float(raw) * 1000)
    except ValueError:
        try:
            ms = parse_duration_ms(raw)
        except InvalidDuration as exc:
            raise SystemExit(f"cairn: {flag}: {exc}") from exc
    if not 0 < ms <= 3_600_000:
        raise SystemExit(f"cairn: {flag} must be more than 0 and at most 1h: {raw!r}")
    return ms


def _shutdown_timeout_ms(raw: str) -> int | None:
    return _timeout_ms("--shutdown-timeout", raw)


def _config(args: argparse.Namespace) -> NodeConfig:
    if args.partitions < 1:
        raise SystemExit("cairn: --partitions must be at least 1")
    for flag, bind in (("--ingress-bind", args.ingress_bind), ("--admin-bind", args.admin_bind)):
        try:
            split_bind(bind)
        except ValueError as exc:
            raise SystemExit(f"cairn: {flag}: {exc}") from exc
    if args.replication < 1:
        raise SystemExit("cairn: --replication must be at least 1 (a leader; R-1 standbys)")
    if args.cluster and args.log != "kafka":
        raise SystemExit("cairn: --cluster needs --log kafka (the nodes share its topics)")
    if args.cluster:
        _check_internal_flags(args)
    if args.kafka_replication_factor < 1:
        raise SystemExit("cairn: --kafka-replication-factor must be at least 1")
    if args.applied_positions_interval_ms < 1:
        raise SystemExit("cairn: --applied-positions-interval-ms must be at least 1")
    if args.standby_apply_interval_ms < 0:
        raise SystemExit("cairn: --standby-apply-interval-ms must not be negative")
    clusters, properties = _kafka_clusters(args)
    optional: dict[str, Any] = {}
    if (shutdown_timeout_ms := _shutdown_timeout_ms(args.shutdown_timeout)) is not None:
        optional["shutdown_timeout_ms"] = shutdown_timeout_ms
    leader_timeout_ms = _timeout_ms("--ingress-leader-timeout", args.ingress_leader_timeout)
    if leader_timeout_ms is not None:
        optional["ingress_leader_timeout_ms"] = leader_timeout_ms
    for name in _LIMITS:
        minimum = 0 if name in _ZERO_ALLOWED else 1
        if getattr(args, name) < minimum:
            raise SystemExit(f"cairn: --{name.replace('_', '-')} must be at least {minimum}")
    _check_snapshot_flags(args)
    try:
        return _node_config(args, clusters, properties, optional)
    except ValueError as exc:
        raise SystemExit(f"cairn: {exc}") from exc


def _check_internal_flags(args: argparse.Namespace) -> None:
    """A cluster node's internal port, advertised address and secret: refused at once, with
    the flag named, rather than when the node starts (``Node`` checks them again)."""
    try:
        host, _ = split_bind(args.internal_bind)
    except ValueError as exc:
        raise SystemExit(f"cairn: --internal-bind: {exc}") from exc
    try:
        advertised_host(args.advertised_address, host)
        read_cluster_secret(args.cluster_secret_file)
    except ValueError as exc:
        raise SystemExit(f"cairn: {exc}") from exc


def _node_config(
    args: argparse.Namespace,
    clusters: dict[str, str],
    properties: dict[str, dict[str, str]],
    optional: dict[str, Any],
) -> NodeConfig:
    return NodeConfig(
        kafka_clusters=clusters,
        kafka_cluster_properties=properties,
        subscription_max_in_flight=args.subscription_max_in_flight,
        data_dir=Path(args.data_dir),
        ingress_bind=args.ingress_bind,
        admin_bind=args.admin_bind,
        log=args.log,
        kafka_bootstrap=args.kafka_bootstrap,
        kafka_topic_prefix=args.kafka_topic_prefix,
        kafka_fetch_max_wait_ms=args.kafka_fetch_max_wait_ms,
        kafka_replication_factor=args.kafka_replication_factor,
        partitions=args.partitions,
        node_name=args.node_name,
        ingress_max_body_bytes=args.ingress_max_body_bytes,
        max_key_bytes=args.max_key_bytes,
        cluster=args.cluster,
        cluster_session_timeout_ms=args.cluster_session_timeout_ms,
        internal_bind=args.internal_bind,
        advertised_address=args.advertised_address,
        cluster_secret_file=args.cluster_secret_file,
        cluster_node_expiry_ms=args.cluster_node_expiry_ms,
        applied_positions_interval_ms=args.applied_positions_interval_ms,
        standby_apply_interval_ms=args.standby_apply_interval_ms,
        replication=args.replication,
        event_loop=args.event_loop,
        **optional,
        **{name: getattr(args, name) for name in _LIMITS},
        snapshot_repository=args.snapshot_repository,
        snapshot_interval_records=args.snapshot_interval_records,
        snapshot_s3_endpoint=args.snapshot_s3_endpoint,
        local_log_segment_bytes=args.local_log_segment_bytes,
        **security_options(args),
    )


def _kafka_clusters(
    args: argparse.Namespace,
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Clusters from CAIRN_KAFKA_CLUSTERS and --kafka-cluster (a flag wins over the env)."""
    try:
        clusters = parse_clusters(_env("KAFKA_CLUSTERS", ""))
        clusters.update(parse_cluster(item) for item in args.kafka_cluster)
        properties: dict[str, dict[str, str]] = {}
        items = [p for p in _env("KAFKA_CLUSTER_PROPERTIES", "").split(";") if p.strip()]
        for item in items + list(args.kafka_cluster_property):
            cluster, key, value = parse_cluster_property(item.strip())
            properties.setdefault(cluster, {})[key] = value
    except ValueError as exc:
        raise SystemExit(f"cairn: --kafka-cluster: {exc}") from exc
    unknown = sorted(set(properties) - set(clusters))
    if unknown:
        raise SystemExit(f"cairn: --kafka-cluster-property for unknown cluster(s) {unknown}")
    if args.subscription_max_in_flight < 1:
        raise SystemExit("cairn: --subscription-max-in-flight must be at least 1")
    return clusters, properties
