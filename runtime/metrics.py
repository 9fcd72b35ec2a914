"""Process-wide Prometheus metrics, served by the admin API at ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


# Latency buckets (seconds) from a fast local call to a long one; batch buckets in records.
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_RECORDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# -- ingress

INGRESS_REQUESTS = Counter(
    "cairn_ingress_requests",
    "Ingress invocation requests answered, by service, handler and HTTP status (service and "
    "handler are empty when the path names no registered handler)",
    ["service", "handler", "status"],
    registry=REGISTRY,
)
INGRESS_LATENCY = Histogram(
    "cairn_ingress_request_duration_seconds",
    "Time from an ingress invocation request's arrival to its answer (a call waits for the "
    "result), by service, handler and HTTP status",
    ["service", "handler", "status"],
    buckets=_SECONDS,
    registry=REGISTRY,
)

# -- invocations and the invoker

INVOCATIONS = Gauge(
    "cairn_invocations",
    "Invocations in the partitions this node leads, by state (scheduled, inboxed, invoked, "
    "suspended, backing_off, completed), counted when /metrics is scraped",
    ["state"],
    registry=REGISTRY,
)
ATTEMPTS_ENDED = Counter(
    "cairn_invoker_attempts_ended",
    "Invocation attempts that ended, by outcome: end (the handler returned or threw a terminal "
    "error), retry (a retryable failure: the invocation backs off), suspended, failed (a "
    "terminal failure of the attempt)",
    ["outcome"],
    registry=REGISTRY,
)
STREAM_DURATION = Histogram(
    "cairn_invoker_stream_duration_seconds",
    "How long an attempt's stream to its endpoint was open",
    buckets=_SECONDS,
    registry=REGISTRY,
)
JOURNAL_ENTRIES = Counter(
    "cairn_journal_entries_appended",
    "Journal entries an endpoint reported, proposed to the log by this node's invoker",
    registry=REGISTRY,
)

# -- partitions

PARTITION_APPLIED = Gauge(
    "cairn_partition_applied_lsn",
    "The last log position this node applied, by partition",
    ["partition"],
    registry=REGISTRY,
)
PARTITION_LAG = Gauge(
    "cairn_partition_lag_records",
    "Records of a partition's log not yet applied by this node (the tail minus the applied "
    "position), read when /metrics is scraped",
    ["partition"],
    registry=REGISTRY,
)
PARTITION_LEADER = Gauge(
    "cairn_partition_leader",
    "1 while this node leads the partition, else 0",
    ["partition"],
    registry=REGISTRY,
)
APPLY_BATCH = Histogram(
    "cairn_partition_apply_batch_records",
    "Records per applied batch (one store write batch each)",
    buckets=_RECORDS,
    registry=REGISTRY,
)
APPLY_LATENCY = Histogram(
    "cairn_partition_apply_seconds",
    "Time to apply one batch of records and commit it to the store",
    buckets=_SECONDS,
    registry=REGISTRY,
)
OUTBOX_BACKLOG = Gauge(
    "cairn_outbox_backlog",
    "Outbox messages not yet delivered to their partition, by partition this node leads "
    "(counted when /metrics is scraped)",
    ["partition"],
    registry=REGISTRY,
)
TIMERS_PENDING = Gauge(
    "cairn_timers_pending",
    "Timers registered and not yet fired, by partition this node leads (counted when /metrics "
    "is scraped)",
    ["partition"],
    registry=REGISTRY,
)

# -- the log

LOG_APPEND_LATENCY = Histogram(
    "cairn_log_append_seconds",
    "Time until an append to the log is durable, by log (partitions or metadata)",
    ["log"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
LOG_APPEND_BATCH = Histogram(
    "cairn_log_append_records",
    "Records per append to the log, by log (partitions or metadata)",
    ["log"],
    buckets=_RECORDS,
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


class AppendMeter:
    """The append metrics of one log, with its label children looked up once (appends are on
    the hot path)."""

    def __init__(self, log_name: str) -> None:
        self._latency = LOG_APPEND_LATENCY.labels(log_name)
        self._batch = LOG_APPEND_BATCH.labels(log_name)

    def observe(self, seconds: float, records: int) -> None:
        self._latency.observe(seconds)
        self._batch.observe(records)


# Label children looked up once: the invoker counts each attempt's end.
ATTEMPT_OUTCOMES = {
    outcome: ATTEMPTS_ENDED.labels(outcome) for outcome in ("end", "retry", "suspended", "failed")
}


_ingress_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}


def observe_ingress(service: str, handler: str, status: int, seconds: float) -> None:
    """Count one answered ingress request (label children cached: bounded by the registered
    handlers times the statuses answered)."""
    labels = (service, handler, str(status))
    children = _ingress_children.get(labels)
    if children is None:
        children = (INGRESS_REQUESTS.labels(*labels), INGRESS_LATENCY.labels(*labels))
        _ingress_children[labels] = children
    children[0].inc()
    children[1].observe(seconds)
