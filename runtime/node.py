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

from partition_processor.actions import RespondToIngress
from partition_processor.store_rocksdb import RocksDBStore
from runtime.admin.http import AdminServer
from runtime.cluster import GroupOwnership, ResponseDelivery
from runtime.ingress.gateway import InvocationGateway, PendingResponses
from runtime.ingress.http import DEFAULT_MAX_BODY_BYTES, IngressServer
from runtime.invoker.channels import ChannelPool
from runtime.invoker.discovery import discover
from runtime.log import KafkaLog, LocalLog, Log
from runtime.metadata import Registry
from runtime.subscriptions.admin import SubscriptionAdmin
from runtime.subscriptions.consumer import ConsumerContext
from runtime.subscriptions.manager import SubscriptionManager
from runtime.subscriptions.spec import KafkaCluster
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
    ingress_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # A cluster: nodes sharing the Kafka topics split the partitions' leadership through a
    # consumer group; a member that dies loses its partitions after the session timeout.
    cluster: bool = False
    cluster_session_timeout_ms: int = 10_000
    # Kafka clusters that subscriptions read (name -> bootstrap), with optional aiokafka client
    # properties per cluster (SASL/TLS). With --log kafka, the log's own cluster is also
    # available under ``kafka_log_cluster_name``. Subscription consumers use the cluster session
    # timeout for their groups too.
    kafka_clusters: dict[str, str] = {}
    kafka_cluster_properties: dict[str, dict[str, str]] = {}
    kafka_log_cluster_name: str = "cairn"
    # Default of a subscription's ``max.in.flight.records`` option.
    subscription_max_in_flight: int = 1000


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
        self._channels = ChannelPool()
        self._responses = PendingResponses()
        self.registry = Registry(self._metadata_log)
        self._workers: list[PartitionWorker] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._ready = False
        self._stopped = False
        self._delivery = ResponseDelivery(self.registry) if config.cluster else None
        self._ownership: GroupOwnership | None = None

    @staticmethod
    def _open_logs(config: NodeConfig) -> tuple[Log, Log]:
        if config.log == "local":
            root = config.data_dir / "log"
            return LocalLog(root / "partitions", config.partitions), LocalLog(root / "metadata", 1)
        if config.log == "kafka":
            prefix = config.kafka_topic_prefix
            wait = timedelta(milliseconds=config.kafka_fetch_max_wait_ms)
            return (
                KafkaLog(
                    config.kafka_bootstrap, f"{prefix}.log", config.partitions, fetch_max_wait=wait
                ),
                KafkaLog(config.kafka_bootstrap, f"{prefix}.metadata", 1, fetch_max_wait=wait),
            )
        raise ValueError(f"unknown log {config.log!r}: expected 'local' or 'kafka'")

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        await self._log.start()
        await self._metadata_log.start()
        self._store = RocksDBStore(config.data_dir / "store")
        await self.registry.start()
        gateway = InvocationGateway(self._log, self.node_id, self._responses)
        ingress = IngressServer(
            self.registry,
            gateway,
            is_ready=lambda: self._ready,
            max_body_bytes=config.ingress_max_body_bytes,
        )
        admin = AdminServer(
            self.registry,
            self._store,
            config.partitions,
            discover=discover,
            gateway=gateway,
            is_ready=lambda: self._ready,
            receive_response=self._responses.respond if config.cluster else None,
            leading=lambda: [w.partition for w in self._workers if w.is_leader],
            node_id=self.node_id,
        )
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
                owned=not config.cluster,
            )
            self._workers.append(worker)
            self._tasks.append(asyncio.create_task(self._supervise(worker)))
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
            await self._ownership.start()
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
            ),
        )
        self._tasks.append(asyncio.create_task(subscriptions.run(), name="subscriptions"))
        self._ready = True
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
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runners.append(runner)

    async def _supervise(self, worker: PartitionWorker) -> None:
        """Restart a partition worker that failed (e.g. the broker was briefly unreachable)."""
        while True:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("partition %d worker failed; restarting in 1 s", worker.partition)
                await asyncio.sleep(1)

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
        if self._stopped:
            return
        self._stopped = True
        self._ready = False
        if self._ownership is not None:
            await self._ownership.stop()  # leave the group: the partitions move at once
        if self._delivery is not None:
            await self._delivery.close()
        for runner in self._runners:
            await runner.cleanup()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.registry.stop()
        await self._channels.close()
        await self._log.close()
        await self._metadata_log.close()
        if self._store is not None:
            self._store.close()
