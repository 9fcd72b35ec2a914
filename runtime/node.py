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
from runtime.cluster import GroupOwnership, ResponseDelivery
from runtime.health import NodeHealth
from runtime.ingress.gateway import InvocationGateway, PendingResponses
from runtime.ingress.http import IngressServer
from runtime.ingress.validation import quiet_malformed_requests
from runtime.invoker.channels import ChannelPool
from runtime.invoker.discovery import discover
from runtime.limits import SizePolicy
from runtime.log import KafkaLog, LocalLog, Log
from runtime.metadata import Registry
from runtime.subscriptions.admin import SubscriptionAdmin
from runtime.subscriptions.consumer import ConsumerContext
from runtime.subscriptions.manager import SubscriptionManager
from runtime.subscriptions.spec import KafkaCluster
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.worker.partition import PartitionWorker

log = logging.getLogger(__name__)


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
    # A stop (SIGTERM, SIGINT) answers waiting callers with 503, ends the invoker streams,
    # flushes the log and the store, and is cut short after this long.
    shutdown_timeout_ms: int = 15_000
    # Kafka clusters that subscriptions read (name -> bootstrap), with optional aiokafka client
    # properties per cluster (SASL/TLS). With --log kafka, the log's own cluster is also
    # available under ``kafka_log_cluster_name``. Subscription consumers use the cluster session
    # timeout for their groups too.
    kafka_clusters: dict[str, str] = {}
    kafka_cluster_properties: dict[str, dict[str, str]] = {}
    kafka_log_cluster_name: str = "cairn"
    # Default of a subscription's ``max.in.flight.records`` option.
    subscription_max_in_flight: int = 1000

    def __post_init__(self) -> None:
        if not 0 < self.max_key_bytes <= keys.MAX_TEXT_BYTES:
            raise ValueError(f"max_key_bytes must be in 1..{keys.MAX_TEXT_BYTES}")
        if self.ingress_max_body_bytes < 1:
            raise ValueError("ingress_max_body_bytes must be positive")
        if self.log_record_overhead_bytes < self.max_headers_bytes + 8 * self.max_key_bytes:
            raise ValueError("log_record_overhead_bytes must hold the headers and keys")
        if self.shutdown_timeout_ms < 1:
            raise ValueError("shutdown_timeout_ms must be positive")
        if self.subscription_max_in_flight < 1:
            raise ValueError("subscription_max_in_flight must be at least 1")

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
        )


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {bind!r}")
    return host, int(port)


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        # The incarnation suffix tells this process's leadership announcements from a previous
        # run's on the same data dir.
        self.node_id = f"{config.node_name}/{uuid.uuid4().hex[:8]}"
        if config.cluster and config.log != "kafka":
            raise ValueError("a cluster shares its log: use --log kafka")
        self._log, self._metadata_log = self._open_logs(config)
        self._store: RocksDBStore | None = None
        self.limits = config.size_policy()
        self._channels = ChannelPool(self.limits.message_bytes)
        self._responses = PendingResponses()
        self.registry = Registry(self._metadata_log)
        self._workers: list[PartitionWorker] = []
        self._supervisor = Supervisor()
        self.health = NodeHealth(self._supervisor, self._owns)
        self._runners: list[web.AppRunner] = []
        self._stopped = False
        self._delivery = (
            ResponseDelivery(self.registry, self._supervisor) if config.cluster else None
        )
        self._ownership: GroupOwnership | None = None
        self._subscriptions: SupervisedTask | None = None

    @staticmethod
    def _open_logs(config: NodeConfig) -> tuple[Log, Log]:
        if config.log == "local":
            root = config.data_dir / "log"
            return LocalLog(root / "partitions", config.partitions), LocalLog(root / "metadata", 1)
        if config.log == "kafka":
            prefix = config.kafka_topic_prefix
            wait = timedelta(milliseconds=config.kafka_fetch_max_wait_ms)
            record_bytes = config.size_policy().record_bytes
            return (
                KafkaLog(
                    config.kafka_bootstrap,
                    f"{prefix}.log",
                    config.partitions,
                    fetch_max_wait=wait,
                    max_record_bytes=record_bytes,
                ),
                KafkaLog(config.kafka_bootstrap, f"{prefix}.metadata", 1, fetch_max_wait=wait),
            )
        raise ValueError(f"unknown log {config.log!r}: expected 'local' or 'kafka'")

    @property
    def ready(self) -> bool:
        return self.health.phase == "serving"

    def _owns(self, partition: int) -> bool:
        worker = self._workers[partition] if partition < len(self._workers) else None
        return worker is not None and (worker.owned or worker.is_leader)

    async def start(self) -> None:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        await self._log.start()
        await self._metadata_log.start()
        self._store = RocksDBStore(config.data_dir / "store")
        await self.registry.start(self._supervisor)
        gateway = InvocationGateway(
            self._log, self.node_id, self._responses, max_record_bytes=self.limits.record_bytes
        )
        ingress = IngressServer(self.registry, gateway, health=self.health, limits=self.limits)
        admin = AdminServer(
            self.registry,
            self._store,
            config.partitions,
            discover=discover,
            gateway=gateway,
            health=self.health,
            receive_response=self._responses.respond if config.cluster else None,
            leading=lambda: [w.partition for w in self._workers if w.is_leader],
            node_id=self.node_id,
            limits=self.limits,
        )
        quiet_malformed_requests()
        clusters = self.kafka_clusters()
        SubscriptionAdmin(
            self.registry, clusters, default_max_in_flight=config.subscription_max_in_flight
        ).install(admin.app)
        await self._serve(ingress.app, config.ingress_bind)
        await self._serve(admin.app, config.admin_bind)
        if config.cluster:
            await self.registry.join(self.node_id, f"http://{config.admin_bind}")
        for partition in range(config.partitions):
            worker = PartitionWorker(
                partition,
                log_=self._log,
                store=self._store,
                node_id=self.node_id,
                registry=self.registry,
                channels=self._channels,
                respond=self._respond,
                limits=self.limits,
                supervisor=self._supervisor,
                owned=not config.cluster,
            )
            self._workers.append(worker)
            self._supervisor.spawn(f"partition-{partition}/apply", worker.run, partition=partition)
        if config.cluster:
            # Followers of every partition, leaders of those the group assigns to this node.
            await asyncio.gather(*(w.synced.wait() for w in self._workers))
            self._ownership = GroupOwnership(
                config.kafka_bootstrap,
                f"{config.kafka_topic_prefix}.log",
                f"{config.kafka_topic_prefix}.leaders",
                self._ownership_changed,
                session_timeout_ms=config.cluster_session_timeout_ms,
            )
            await self._ownership.start(self._supervisor)
        else:
            await asyncio.gather(*(w.caught_up.wait() for w in self._workers))
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

    async def _serve(self, app: web.Application, bind: str) -> None:
        host, port = split_bind(bind)
        # Handlers still running when the node stops get this long to finish (the waiting
        # callers have been answered by then): a fraction of the whole stop's budget.
        grace_s = self.config.shutdown_timeout_ms / 1000 / 4
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace_s)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runners.append(runner)

    async def _ownership_changed(self, gained: set[int], lost: set[int]) -> None:
        for partition in sorted(lost):
            await self._workers[partition].release()
        for partition in sorted(gained):
            self._workers[partition].claim()

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
        if self._ownership is not None:
            await self._ownership.stop()  # leave the group: the partitions move at once
        if self._delivery is not None:
            await self._delivery.close()
        for runner in self._runners:
            await runner.cleanup()
        await self._supervisor.shutdown()
        await self.registry.stop()
        await self._channels.close()
        await self._log.close()
        await self._metadata_log.close()
        if self._store is not None:
            self._store.close()
