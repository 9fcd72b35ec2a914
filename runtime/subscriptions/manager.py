"""Runs this node's consumers of every subscription in the cluster metadata (DESIGN §8a).

It follows the registry: a subscription added anywhere gets a consumer here, one deleted anywhere
has its consumer stopped (leaving the group) as soon as this node applies the deletion.

The manager and each consumer are tasks of the node's ``Supervisor`` (``subscriptions`` and
``subscription-<id>``): a failure is logged, counted and retried after the supervisor's backoff.
They do not affect the node's health (``runtime/health.py``): health lists them while they fail.
"""

from __future__ import annotations

import asyncio
import logging

from runtime.metadata import Subscription
from runtime.subscriptions.consumer import ConsumerContext, SubscriptionConsumer
from runtime.subscriptions.spec import KafkaCluster, parse_source
from runtime.supervisor import SupervisedTask, Supervisor

log = logging.getLogger(__name__)

# The metric label of every consumer task (its name holds the subscription id).
CONSUMER_KIND = "subscription"


def consumer_task_name(subscription_id: str) -> str:
    return f"subscription-{subscription_id}"


class SubscriptionManager:
    def __init__(
        self,
        clusters: dict[str, KafkaCluster],
        context: ConsumerContext,
        supervisor: Supervisor,
    ) -> None:
        self._registry = context.registry
        self._clusters = clusters
        self._context = context
        self._supervisor = supervisor
        self._running: dict[str, SupervisedTask] = {}

    async def run(self) -> None:
        """Reconcile with the registry after every subscription change, until cancelled.

        After a failure the supervisor runs this again: the consumers started so far run on.
        Cancelled (the node stops), it stops them, so they leave their groups at once.
        """
        try:
            while True:
                version = self._registry.subscriptions_version
                await self._reconcile(self._registry.subscriptions())
                await self._registry.wait_subscriptions_changed(version)
        except asyncio.CancelledError:
            await self._reconcile([])
            raise

    async def _reconcile(self, wanted: list[Subscription]) -> None:
        wanted_ids = {s.id for s in wanted}
        for subscription_id in [i for i in self._running if i not in wanted_ids]:
            await self._running.pop(subscription_id).stop()
            log.info("subscription %s stopped on this node", subscription_id)
        for subscription in wanted:
            running = self._running.get(subscription.id)
            if running is not None and not running.done:
                continue
            cluster_name, _ = parse_source(subscription.source)
            cluster = self._clusters.get(cluster_name)
            if cluster is None:
                # Created on a node that knows this cluster: this one cannot read it.
                log.error(
                    "subscription %s reads cluster %r, which this node has no --kafka-cluster for",
                    subscription.id,
                    cluster_name,
                )
                continue
            consumer = SubscriptionConsumer(subscription, cluster, self._context)
            self._running[subscription.id] = self._supervisor.spawn(
                consumer_task_name(subscription.id),
                consumer.run,
                affects_health=False,
                kind=CONSUMER_KIND,
            )
            log.info(
                "subscription %s: %s -> %s", subscription.id, subscription.source, subscription.sink
            )
