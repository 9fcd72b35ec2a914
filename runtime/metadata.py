"""Cluster metadata: registered deployments and their services (DESIGN §3, §7).

Metadata is a stream of records on its own single-partition log (``cairn.metadata``) that every
node follows from the start; the in-memory registry is derived from it, never written directly.

Every record has a key (``metadata_key``) naming the one fact it states, and the record is the
whole current value of that fact: ``deployment/<id>``, ``subscription/<id>``, ``node/<id>``,
``positions/<id>``. A removal is a record under the same key (``SubscriptionRemoved``,
``NodeLeft``, an empty ``AppliedPositions``). So the compacted Kafka topic, which keeps only the
last record of each key (in log order), yields the same registry as the whole history.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from partition_processor.commands import HandlerKind, RetryPolicy, ServiceType, Target
from partition_processor.ids import stable_hash64
from runtime.clock import now_ms
from runtime.faults import fault_point
from runtime.log import Log
from runtime.supervisor import SupervisedTask, Supervisor

log = logging.getLogger(__name__)


class InputRules(msgspec.Struct, frozen=True):
    """What a handler accepts as its request body (the manifest's ``InputPayload``).

    The defaults are Restate's for a handler that declares nothing (and for deployments
    registered before handlers declared it): no body at all, or any body with a content-type.
    """

    required: bool = False
    content_type: str | None = "*/*"  # Accept syntax; None: the handler takes no input
    non_empty: bool = False
    json: bool = False


class OutputRules(msgspec.Struct, frozen=True):
    """The content-type of a handler's responses (the manifest's ``OutputPayload``)."""

    content_type: str | None = "application/json"
    set_content_type_if_empty: bool = False


class HandlerInfo(msgspec.Struct, frozen=True):
    name: str
    kind: HandlerKind
    retry_policy: RetryPolicy = RetryPolicy()
    idempotency_retention_ms: int | None = None
    workflow_retention_ms: int | None = None
    inactivity_timeout_ms: int | None = None
    # descriptive only (admin API); defaults keep older metadata records readable
    documentation: str | None = None
    metadata: dict[str, str] = {}
    input: InputRules = InputRules()
    output: OutputRules = OutputRules()
    abort_timeout_ms: int | None = None


DAY_MS = 24 * 3600 * 1000
# Completed invocations without an idempotency key are still kept this long, so that a record the
# log delivers twice (Kafka producer retries) finds its status and is not executed again.
DEDUP_RETENTION_MS = 10 * 60 * 1000


def completion_retention_ms(handler: HandlerInfo, idempotent: bool) -> int:
    """How long a completed invocation of ``handler`` keeps its result.

    A workflow run keeps its result, state and promises for the workflow retention (a second
    submission of the key gets 409 meanwhile); an idempotent request for the idempotency retention.
    """
    # None is unset (a day); 0 is honoured: the result is forgotten as soon as it is delivered
    if handler.kind == "workflow":
        return DAY_MS if handler.workflow_retention_ms is None else handler.workflow_retention_ms
    if idempotent:
        retention = handler.idempotency_retention_ms
        return DAY_MS if retention is None else retention
    return DEDUP_RETENTION_MS


class ServiceInfo(msgspec.Struct, frozen=True):
    name: str
    service_type: ServiceType
    handlers: dict[str, HandlerInfo]
    deployment_id: str = ""
    documentation: str | None = None
    metadata: dict[str, str] = {}
    # 1 for the first deployment serving the service, +1 for each later one (set on apply).
    revision: int = 1

    def resolve(self, handler: str, key: str | None) -> tuple[Target, HandlerInfo] | None:
        """The full target of ``handler`` (None if unknown or the key does not fit the type)."""
        info = self.handlers.get(handler)
        if info is None or (key is None) != (self.service_type == "service"):
            return None
        target = Target(self.name, handler, self.service_type, info.kind, key)
        return target, info


class Deployment(msgspec.Struct, frozen=True):
    id: str
    uri: str
    services: list[ServiceInfo]
    registered_ms: int = 0
    # The endpoint reads batched stream messages (its manifest's message_batches). False for
    # records from before batches: such a deployment gets one message per gRPC message until
    # it is registered again.
    message_batches: bool = False
    # The endpoint serves many attempts on one stream (its manifest's multiplex). False for
    # records from before: such a deployment gets a call per attempt until registered again.
    multiplex: bool = False


def _same_services(registered: Deployment, discovered: Deployment) -> bool:
    """Whether a discovered deployment is the registered one (revisions are ours, not its)."""
    return registered.uri == discovered.uri and [
        msgspec.structs.replace(s, revision=1, deployment_id="") for s in registered.services
    ] == [msgspec.structs.replace(s, revision=1, deployment_id="") for s in discovered.services]


class DeploymentRegistered(msgspec.Struct, tag="deployment_registered", frozen=True):
    deployment: Deployment


class DeploymentRemoved(msgspec.Struct, tag="deployment_removed", frozen=True):
    """A deployment was removed (README, Versions); its services fall back to the newest other
    deployment offering them. Under the deployment's own key, so compaction keeps only this."""

    deployment_id: str


class NodeJoined(msgspec.Struct, tag="node_joined", frozen=True):
    """A node of a cluster, where its admin API listens, and where peers reach its internal
    (node-to-node) API: ``http://ADVERTISED_HOST:PORT`` with the port actually bound."""

    node_id: str
    admin_url: str
    # "" in records of nodes from before the internal port: no node-to-node calls reach them.
    internal_url: str = ""


class NodeLeft(msgspec.Struct, tag="node_left", frozen=True):
    """A node left the cluster: it stopped cleanly, or was silent past the node expiry."""

    node_id: str


class AppliedPositions(msgspec.Struct, tag="applied_positions", frozen=True):
    """How far a cluster node has applied each partition, at ``at_ms`` on its clock.

    Published now and then by every cluster node (its heartbeat); a partition's log is trimmed
    only below what every recently reporting node has applied (README, Snapshots and trimming).
    Empty ``positions``: the node left, its positions hold nothing back.
    """

    node_id: str
    positions: list[int]
    at_ms: int


class Subscription(msgspec.Struct, frozen=True):
    """A Kafka topic feeding a handler (DESIGN §8a): ``kafka://CLUSTER/TOPIC`` →
    ``service://SERVICE/HANDLER``, with its validated options."""

    id: str
    source: str
    sink: str
    options: dict[str, str] = {}
    created_ms: int = 0


class SubscriptionAdded(msgspec.Struct, tag="subscription_added", frozen=True):
    subscription: Subscription


class SubscriptionRemoved(msgspec.Struct, tag="subscription_removed", frozen=True):
    subscription_id: str


MetadataRecord = (
    DeploymentRegistered
    | DeploymentRemoved
    | NodeJoined
    | NodeLeft
    | AppliedPositions
    | SubscriptionAdded
    | SubscriptionRemoved
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MetadataRecord)


def metadata_key(record: MetadataRecord) -> bytes:
    """The Kafka key of ``record``: the fact whose whole current value it is."""
    match record:
        case DeploymentRegistered(deployment=deployment):
            fact = f"deployment/{deployment.id}"
        case DeploymentRemoved(deployment_id=deployment_id):
            fact = f"deployment/{deployment_id}"
        case NodeJoined(node_id=node_id) | NodeLeft(node_id=node_id):
            fact = f"node/{node_id}"
        case AppliedPositions(node_id=node_id):
            fact = f"positions/{node_id}"
        case SubscriptionAdded(subscription=subscription):
            fact = f"subscription/{subscription.id}"
        case SubscriptionRemoved(subscription_id=subscription_id):
            fact = f"subscription/{subscription_id}"
    return fact.encode()


def encode_metadata(record: MetadataRecord) -> bytes:
    return _encoder.encode(record)


def decode_metadata(payload: bytes) -> MetadataRecord:
    """Raises ``msgspec.DecodeError`` for a record that is not metadata."""
    return _decoder.decode(payload)


class DeploymentConflict(Exception):
    """A deployment at a registered URI serves other services than registered, without force."""


def deployment_id_for(uri: str) -> str:
    return f"dp_{stable_hash64('deployment', uri):016x}"


class Registry:
    """Follows the metadata log and answers which deployment serves which service."""

    def __init__(self, metadata_log: Log) -> None:
        self._log = metadata_log
        self._deployments: dict[str, Deployment] = {}
        self._services: dict[str, ServiceInfo] = {}
        self._nodes: dict[str, NodeJoined] = {}
        # Nodes whose last record says they left (a late delivery to them is dropped).
        self._left: set[str] = set()
        # When this registry last read a record of each node (its own monotonic clock, so that
        # other nodes' clocks do not matter): a node silent past the expiry is removed.
        self._seen: dict[str, float] = {}
        self._positions: dict[str, AppliedPositions] = {}
        self._subscriptions: dict[str, Subscription] = {}
        # Bumped by every subscription change, so that consumers can wait for the next one.
        self.subscriptions_version = 0
        self._applied_lsn = -1
        self._changed = asyncio.Condition()
        self._follower: SupervisedTask | None = None

    async def start(self, supervisor: Supervisor) -> None:
        """Start following and return once everything already in the log is applied."""
        tail = await self._log.tail(0)
        self._follower = supervisor.spawn("metadata-follower", self._follow)
        await self.wait_applied(tail - 1)

    async def stop(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None

    def service(self, name: str) -> ServiceInfo | None:
        return self._services.get(name)

    def services(self) -> list[ServiceInfo]:
        return sorted(self._services.values(), key=lambda s: s.name)

    def deployments(self) -> list[Deployment]:
        return sorted(self._deployments.values(), key=lambda d: d.id)

    def deployment(self, deployment_id: str) -> Deployment | None:
        return self._deployments.get(deployment_id)

    def node_internal_url(self, node_id: str) -> str | None:
        """Where node ``node_id``'s internal API listens (None: unknown, or a node from before
        the internal port)."""
        joined = self._nodes.get(node_id)
        return joined.internal_url or None if joined is not None else None

    def nodes(self) -> list[str]:
        """The ids of the cluster's nodes now (joined, not left)."""
        return sorted(self._nodes)

    def has_left(self, node_id: str) -> bool:
        """Whether ``node_id``'s last record says it left (stopped, or expired)."""
        return node_id in self._left

    def applied_positions(self) -> dict[str, list[int]]:
        """The last applied positions each node in the cluster reported."""
        return {node: p.positions for node, p in sorted(self._positions.items())}

    async def join(self, node_id: str, admin_url: str, internal_url: str) -> None:
        """Tell the cluster where this node can be reached."""
        lsn = await self._append([NodeJoined(node_id, admin_url, internal_url)])
        await self.wait_applied(lsn)

    async def leave(self, node_id: str) -> None:
        """Remove ``node_id`` from the cluster: no delivery to it, its positions hold no trim.

        Appended, not awaited back (a stopping node's follower may be gone already).
        """
        await self._append([NodeLeft(node_id), AppliedPositions(node_id, [], now_ms())])

    def expired(self, now_s: float, expiry_s: float) -> list[str]:
        """Nodes (not yet left) of which nothing was read for ``expiry_s`` before ``now_s``
        (``time.monotonic()``)."""
        return sorted(
            node
            for node, seen in self._seen.items()
            if node not in self._left and now_s - seen > expiry_s
        )

    async def publish_positions(self, node_id: str, positions: list[int]) -> None:
        """Tell the cluster how far this node has applied each partition (and that it lives)."""
        await self._append([AppliedPositions(node_id, positions, now_ms())])

    def lowest_applied(
        self, partition: int, since_ms: int, nodes: list[str] | None = None
    ) -> int | None:
        """The lowest position of ``partition`` over ``nodes`` (default: every node that
        reported since ``since_ms``). None when one of ``nodes`` has not reported since then,
        or none did: then nothing is known to be safe to trim."""
        reports = self._positions
        if nodes is not None:
            chosen = [reports.get(node) for node in nodes]
            if any(r is None or r.at_ms < since_ms for r in chosen):
                return None
            recent = [r for r in chosen if r is not None]
        else:
            recent = [r for r in reports.values() if r.at_ms >= since_ms]
        reported = [r.positions[partition] for r in recent if partition < len(r.positions)]
        if nodes is not None and len(reported) < len(recent):
            return None
        return min(reported) if reported else None

    async def register(
        self, deployment: Deployment, *, force: bool = False
    ) -> tuple[Deployment, bool]:
        """Record a deployment; returns it and False when an identical one was registered.

        The same URI serving changed services replaces the registered deployment only with
        ``force`` (``DeploymentConflict`` otherwise): invocations already running on it would
        meet handlers that changed under them. ``force`` records even an unchanged deployment
        again, so that its services are served by it again (a rollback to it).
        """
        existing = self._deployments.get(deployment.id)
        if existing is not None and _same_services(existing, deployment) and not force:
            if (existing.message_batches, existing.multiplex) == (
                deployment.message_batches,
                deployment.multiplex,
            ):
                return existing, False
            # The same handlers on an endpoint that now speaks (or no longer speaks) batches or
            # multiplexing: nothing running meets other code, so no force is needed and
            # revisions stay. It is recorded again, so it becomes the newest registration (as
            # any registration).
            updated = msgspec.structs.replace(
                existing,
                message_batches=deployment.message_batches,
                multiplex=deployment.multiplex,
            )
            lsn = await self._append([DeploymentRegistered(updated)])
            await self.wait_applied(lsn)
            return self._deployments[deployment.id], True
        if existing is not None and not force:
            raise DeploymentConflict(
                f"a deployment at {deployment.uri} is already registered ({existing.id}) with "
                'other services or handlers; register again with "force": true to replace it'
            )
        # Each service's revision is decided here and kept in the record, so that a compacted
        # history (which drops earlier registrations) still knows it.
        revised = []
        for service in deployment.services:
            current = self._services.get(service.name)
            revision = current.revision + 1 if current is not None else 1
            revised.append(msgspec.structs.replace(service, revision=revision))
        stamped = msgspec.structs.replace(deployment, services=revised, registered_ms=now_ms())
        lsn = await self._append([DeploymentRegistered(stamped)])
        await self.wait_applied(lsn)
        return self._deployments[deployment.id], True

    async def remove(self, deployment_id: str) -> None:
        """Remove a deployment (whether invocations are pinned to it is the caller's check)."""
        lsn = await self._append([DeploymentRemoved(deployment_id)])
        await self.wait_applied(lsn)

    def subscriptions(self) -> list[Subscription]:
        return sorted(self._subscriptions.values(), key=lambda s: s.id)

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self._subscriptions.get(subscription_id)

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        stamped = msgspec.structs.replace(subscription, created_ms=now_ms())
        lsn = await self._append([SubscriptionAdded(stamped)])
        await self.wait_applied(lsn)
        return self._subscriptions.get(subscription.id, stamped)

    async def remove_subscription(self, subscription_id: str) -> None:
        lsn = await self._append([SubscriptionRemoved(subscription_id)])
        await self.wait_applied(lsn)

    async def wait_subscriptions_changed(self, seen_version: int) -> int:
        """Return the subscriptions version once it differs from ``seen_version``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.subscriptions_version != seen_version)
            return self.subscriptions_version

    async def wait_applied(self, lsn: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._applied_lsn >= lsn)

    async def _append(self, records: list[MetadataRecord]) -> int:
        """Append ``records``, each under its key; the LSN of the last."""
        payloads = [_encoder.encode(r) for r in records]
        return await self._log.append(0, payloads, [metadata_key(r) for r in records])

    async def _follow(self) -> None:
        # From where it stopped: a restarted follower goes on after the last applied batch.
        async for batch in self._log.read(0, self._applied_lsn + 1):
            fault_point("metadata.apply")
            for record in batch:
                try:
                    self._apply(_decoder.decode(record.payload))
                except msgspec.DecodeError:
                    log.error("undecodable metadata record at lsn %d skipped", record.lsn)
            async with self._changed:
                self._applied_lsn = batch[-1].lsn
                self._changed.notify_all()

    def _apply(self, record: MetadataRecord) -> None:
        # Each record changes only the fact of its own key (what compaction relies on).
        if isinstance(record, NodeJoined):
            self._nodes[record.node_id] = record
            self._left.discard(record.node_id)
            self._seen[record.node_id] = time.monotonic()
            return
        if isinstance(record, NodeLeft):
            self._nodes.pop(record.node_id, None)
            self._left.add(record.node_id)
            self._seen.pop(record.node_id, None)
            return
        if isinstance(record, AppliedPositions):
            if record.positions:
                self._positions[record.node_id] = record
                if record.node_id not in self._left:
                    self._seen[record.node_id] = time.monotonic()
            else:
                self._positions.pop(record.node_id, None)
            return
        if isinstance(record, SubscriptionAdded):
            self._subscriptions[record.subscription.id] = record.subscription
            self.subscriptions_version += 1
            return
        if isinstance(record, SubscriptionRemoved):
            self._subscriptions.pop(record.subscription_id, None)
            self.subscriptions_version += 1
            return
        if isinstance(record, DeploymentRemoved):
            self._deployments.pop(record.deployment_id, None)
        else:
            deployment = record.deployment
            # The dict's order is the order of the deployments' last registrations, which a
            # compacted history keeps.
            self._deployments.pop(deployment.id, None)
            self._deployments[deployment.id] = deployment
        # A function of the current deployments only (not of registrations compaction drops):
        # a service is served by the newest registration offering it, as in Restate; one that a
        # re-registered deployment dropped falls back to an older deployment still offering it.
        self._services = {
            service.name: msgspec.structs.replace(service, deployment_id=current.id)
            for current in self._deployments.values()
            for service in current.services
        }
