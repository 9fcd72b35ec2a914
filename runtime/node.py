"""A Cairn node: the only place that wires real I/O together (DESIGN §8).

One process: the log, the RocksDB store, a worker per partition (processor + leader actuators),
the metadata registry, the invoker's gRPC channels, and the ingress and admin HTTP servers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from partition_processor.actions import RespondToIngress
from partition_processor.store_rocksdb import RocksDBStore
from runtime.admin.placement import ClusterAdmin
from runtime.admin.sql import Placement as SqlPlacement
from runtime.admin.sql import SqlQueries
from runtime.admin.state import ObjectState
from runtime.clock import Clock, SystemClock
from runtime.cluster import ResponseDelivery
from runtime.config import NodeConfig, config_default, split_bind
from runtime.console.app import Console
from runtime.console.throughput import Throughput
from runtime.health import NodeHealth
from runtime.ingress.gateway import PendingResponses
from runtime.ingress.validation import quiet_malformed_requests
from runtime.internal import InternalClient, advertised_host, read_cluster_secret
from runtime.invoker.attempt import StreamTimeouts
from runtime.invoker.channels import ChannelPool
from runtime.invoker.discovery import discover
from runtime.invoker.slots import RunningSlots
from runtime.leader_notices import NOTICE_TIMEOUT_S, LeaderNotices
from runtime.log import KafkaLog
from runtime.membership import Membership, run_membership
from runtime.metadata import Deployment, Registry
from runtime.metadata_compaction import compact_local_metadata
from runtime.metrics_scrape import refresh_gauges
from runtime.node_admin import wire_admin
from runtime.node_cluster import leave_cluster, new_membership
from runtime.node_ingress import wire_ingress
from runtime.node_logs import local_metadata_dir, open_logs
from runtime.node_serving import NodeServers, serve_internal
from runtime.peers import READ_TIMEOUT_S, PeerClient
from runtime.security.setup import NodeSecurity
from runtime.snapshots.manager import SnapshotInfo, Snapshotter
from runtime.snapshots.repository import SnapshotRef, open_repository
from runtime.stopping import StopOnce, StopStep
from runtime.subscriptions.consumer import ConsumerContext
from runtime.subscriptions.manager import SubscriptionManager
from runtime.subscriptions.spec import KafkaCluster
from runtime.supervisor import SupervisedTask, Supervisor
from runtime.versions.check import Candidate, CheckReport, check_upgrade
from runtime.worker.partition import PartitionWorker
from runtime.worker.replicas import ReplicaWorkers

# NodeConfig's home is runtime.config; these names stay importable from here.
__all__ = ["Node", "NodeConfig", "config_default", "split_bind"]

log = logging.getLogger(__name__)

# One node-to-node request (a result delivery) may take this long before it is retried.
_PEER_TIMEOUT_S = 5.0


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
        self._log, self._metadata_log = open_logs(config, self._supervisor)
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
        self._http = NodeServers(config, self.security)
        self._stop = StopOnce()
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
            await compact_local_metadata(local_metadata_dir(config))
        await self._metadata_log.start()
        for each in self._kafka_logs():
            self._supervisor.spawn(
                f"log-reachability/{each.topic}", each.reachability.run, kind="log-reachability"
            )
        self._store = RocksDBStore(config.data_dir / "store")
        self._membership = new_membership(config, self.node_id, self.registry, self.workers)
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
        gateway, ingress = wire_ingress(
            config,
            log_=self._log,
            node_id=self.node_id,
            responses=self._responses,
            registry=self.registry,
            health=self.health,
            limits=self.limits,
            security=self.security,
            overloaded=self._overloaded,
        )
        clusters = self.kafka_clusters()
        wiring = wire_admin(
            config,
            node_id=self.node_id,
            registry=self.registry,
            store=self._store,
            gateway=gateway,
            health=self.health,
            limits=self.limits,
            security=self.security,
            workers=self.workers,
            peers=self._peers,
            client=self._client,
            internal_url=lambda: self.internal_url,
            discover=self.discover,
            snapshots=self if self._snapshotter is not None else None,
            before_metrics=self._refresh_metrics,
            upgrade_check=self.check_upgrade,
            placement=SqlPlacement(self.applied_partitions, self._replicas),
            clusters=clusters,
        )
        admin, self._cluster, self._sql = wiring.admin, wiring.cluster, wiring.sql
        self.object_state = admin.state
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
        quiet_malformed_requests()
        await self._http.serve(ingress.app, config.ingress_bind, shared=True)
        await self._http.serve(admin.app, config.admin_bind, shared=True)
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

    async def _join(self) -> None:
        if self.internal_url is None:
            self.internal_url = await serve_internal(
                self._http,
                secret=self._secret,
                advertised=self._advertised,
                responses=self._responses,
                sql=self._sql,
                cluster=self._cluster,
                limits=self.limits,
            )
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

        Every step runs even if one before it fails (the first failure is raised at the end),
        and a caller that stops waiting does not cut the stop short: a later ``stop`` waits for
        the same one (runtime/stopping.py). Also the way to release what a ``start`` that failed
        had opened already.
        """
        await self._stop.run(self._stop_steps)

    def _stop_steps(self) -> list[StopStep]:
        steps: list[StopStep] = [("health", self._stopping)]
        if self._subscriptions is not None:
            # Before the waiters are answered: no record is taken in while the node stops, and
            # the consumers leave their groups, so their partitions move at once.
            steps.append(("subscriptions", self._subscriptions.stop))
        steps.append(("waiting callers", self._responses.shut_down))
        if self._membership is not None:
            # Leave the group: the partitions move at once.
            steps.append(("membership", self._membership.leave))
        if self._membership_task is not None:
            # No heartbeat after the node said it left.
            steps.append(("heartbeat", self._membership_task.stop))
        if self.config.cluster:
            steps.append(("cluster", lambda: leave_cluster(self.registry, self.node_id)))
        for name, closing in (
            ("result delivery", self._delivery),
            ("leader notices", self._notices),
            ("peers", self._peers),
        ):
            if closing is not None:
                steps.append((name, closing.close))
        # No new connections; open ones are closed.
        steps += [("http servers", self._http.close), ("tasks", self._supervisor.shutdown)]
        if self._snapshotter is not None:
            steps.append(("snapshots", self._snapshotter.close))
        steps += [
            ("registry", self.registry.stop),
            ("running slots", self._slots.close),
            ("endpoint channels", self._channels.close),
            ("log", self._log.close),
            ("metadata log", self._metadata_log.close),
        ]
        if self._store is not None:
            steps.append(("store", self._store.close))
        return steps

    def _stopping(self) -> None:
        self.health.phase = "stopping"
