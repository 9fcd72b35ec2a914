"""Process-wide Prometheus metrics, served by the admin API at ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

OPEN_ATTEMPTS = Gauge(
    "cairn_invoker_open_attempts",
    "Invocation attempts with an open stream to an SDK endpoint (suspended ones hold none)",
    registry=REGISTRY,
)
ATTEMPTS_STARTED = Counter(
    "cairn_invoker_attempts_started", "Invocation attempts started", registry=REGISTRY
)

RECORDS_REJECTED = Counter(
    "cairn_records_rejected",
    "Log records that could not be applied: their invocation failed instead, or they were dropped",
    ["reason"],
    registry=REGISTRY,
)
MALFORMED_REQUESTS = Counter(
    "cairn_http_malformed_requests",
    "HTTP requests refused before routing (unparsable request line, headers or body framing)",
    ["server"],
    registry=REGISTRY,
)
TASK_FAILURES = Counter(
    "cairn_task_failures",
    "Failures of supervised background tasks, by task kind",
    ["task"],
    registry=REGISTRY,
)
TASK_RESTARTS = Counter(
    "cairn_task_restarts",
    "Restarts of supervised background tasks after a failure, by task kind",
    ["task"],
    registry=REGISTRY,
)
WAITING_STARTS = Gauge(
    "cairn_invoker_waiting_starts",
    "Invocation attempts waiting for a running slot (--max-running-invocations)",
    registry=REGISTRY,
)
ATTEMPTS_ABORTED = Counter(
    "cairn_invoker_attempts_aborted",
    "Attempts aborted after the inactivity and abort timeouts without progress",
    registry=REGISTRY,
)
INVOKER_APPENDS = Counter(
    "cairn_invoker_appends",
    "Log appends of invocation attempts' effects (several effects share one append)",
    registry=REGISTRY,
)
INVOKER_EFFECTS = Counter(
    "cairn_invoker_effects",
    "Effects of invocation attempts appended to the log (journal entries, run results, ends)",
    registry=REGISTRY,
)
REQUESTS_REFUSED = Counter(
    "cairn_ingress_requests_refused",
    "Ingress requests refused with 429/503 by a bound (concurrency, backlog)",
    ["reason"],
    registry=REGISTRY,
)
RECORDS_DROPPED = Counter(
    "cairn_records_dropped",
    "Log records applied without effect: a deposed leader's (stale_epoch), an outbox message "
    "already delivered (producer_repeat), or one that changed nothing (no_effect)",
    ["reason"],
    registry=REGISTRY,
)
REATTACHES = Counter(
    "cairn_ingress_reattaches",
    "Attach records appended by waiting ingress calls after a leadership change or the "
    "re-attach interval, so that a result whose delivery was lost still reaches them",
    registry=REGISTRY,
)
RECORDS_APPLIED = Counter(
    "cairn_records_applied",
    "Log records applied by this node's partition processors (replay after a restore included)",
    registry=REGISTRY,
)
PARTITIONS_APPLIED = Gauge(
    "cairn_partitions_applied",
    "Partitions this node applies (a cluster node: those it is a replica of; a single node: all)",
    registry=REGISTRY,
)
SNAPSHOTS_TAKEN = Counter(
    "cairn_snapshots_taken", "Partition snapshots written to the repository", registry=REGISTRY
)
SNAPSHOT_RESTORES = Counter(
    "cairn_snapshot_restores", "Partitions restored from a snapshot", registry=REGISTRY
)
SNAPSHOTS_CORRUPT = Counter(
    "cairn_snapshots_corrupt",
    "Snapshots skipped at restore because their checksum or format was wrong",
    registry=REGISTRY,
)
RECORDS_REPLAY_SKIPPED = Counter(
    "cairn_snapshot_records_skipped",
    "Log records not replayed because a restored snapshot already held their effect",
    registry=REGISTRY,
)
SUBSCRIPTION_RECORDS = Counter(
    "cairn_subscription_records",
    "Kafka records a subscription appended to the log as invocations",
    ["subscription"],
    registry=REGISTRY,
)
SUBSCRIPTION_REJECTED = Counter(
    "cairn_subscription_records_rejected",
    "Kafka records that could not become invocations (no key for a keyed sink, a value that is "
    "not JSON), kept as failed invocations",
    ["subscription"],
    registry=REGISTRY,
)
SUBSCRIPTION_IN_FLIGHT = Gauge(
    "cairn_subscription_in_flight",
    "Records of a subscription appended by this node whose invocation has not completed",
    ["subscription"],
    registry=REGISTRY,
)
SUBSCRIPTION_LAG = Gauge(
    "cairn_subscription_lag",
    "Records of a source partition not yet appended (highwater minus next offset), on the node "
    "that consumes the partition",
    ["subscription", "topic", "partition"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)
