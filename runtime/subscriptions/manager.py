"""Runs this node's consumers of every subscription in the cluster metadata (DESIGN §8a).

It follows the registry: a subscription added anywhere gets a consumer here, one deleted anywhere
has its consumer stopped (leaving the group) as soon as this node applies the deletion.
"""

from __future__ import annotations

import asyncio
import logging

from runtime.metadata import Subscription
from runtime.subscriptions.consumer import ConsumerContext, SubscriptionConsumer
from runtime.subscriptions.spec import KafkaCluster, parse_source

log = logging.getLogger(__name__)


class SubscriptionManager:
    def __init__(
        self,
        clusters: dict[str, KafkaCluster],
        context: ConsumerContext,
    ) -> None:
        self._registry = context.registry
        self._clusters = clusters
        self._context = context
        self._running: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Reconcile with the registry after every subscription change, until cancelled."""
        try:
            while True:
                try:
                    await self._follow()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("subscription manager failed; restarting in 1 s")
                    await asyncio.sleep(1.0)
        finally:
            await self._reconcile([])

    async def _follow(self) -> None:
        while True:
            version = self._registry.subscriptions_version
            await self._reconcile(self._registry.subscriptions())
            await self._registry.wait_subscriptions_changed(version)

    async def _reconcile(self, wanted: list[Subscription]) -> None:
        wanted_ids = {s.id for s in wanted}
        for subscription_id in [i for i in self._running if i not in wanted_ids]:
            task = self._running.pop(subscription_id)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.info("subscription %s stopped on this node", subscription_id)
        for subscription in wanted:
            if subscription.id in self._running:
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
            self._running[subscription.id] = asyncio.create_task(
                consumer.run(), name=f"subscription-{subscription.id}"
            )
            log.info(
                "subscription %s: %s -> %s", subscription.id, subscription.source, subscription.sink
            )
