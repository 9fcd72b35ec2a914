"""The placement assignor in a real consumer group on the Tansu broker: the custom protocol name
and both user data (member metadata in JoinGroup, the placement in SyncGroup) pass through, and
each member is assigned the Kafka partitions it leads."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from runtime.cluster import GroupOwnership, PlacementAssignor
from runtime.placement import Placement
from runtime.supervisor import Supervisor
from tests.support.broker import unique_topic

PARTITIONS = 6


async def test_members_receive_the_whole_placement_through_the_broker(
    kafka_bootstrap: str,
) -> None:
    topic = unique_topic("placement")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    seen: dict[str, list[Placement]] = {"a": [], "b": []}
    supervisor = Supervisor()
    members: list[GroupOwnership] = []

    def member(node: str, applied: list[int]) -> GroupOwnership:
        async def changed(placement: Placement) -> None:
            seen[node].append(placement)

        assignor = PlacementAssignor(
            node, partitions=PARTITIONS, replication=2, applied=lambda: applied
        )
        return GroupOwnership(
            kafka_bootstrap, topic, f"{topic}.leaders", changed, assignor, session_timeout_ms=3000
        )

    async def settled() -> Placement:
        for _ in range(300):
            a, b = seen["a"], seen["b"]
            if a and b and a[-1] == b[-1] and len(a[-1].replicas_of("b")) == PARTITIONS:
                return a[-1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no common placement: {seen}")

    try:
        members.append(member("a", [5] * PARTITIONS))
        await members[0].start(supervisor)
        members.append(member("b", [-1] * PARTITIONS))
        await members[1].start(supervisor)
        placement = await settled()
        # b joined second: it became a standby of everything, then took half the leadership.
        assert all(sorted(nodes) == ["a", "b"] for nodes in placement.replicas)
        assert len(placement.led_by("a")) == len(placement.led_by("b")) == PARTITIONS // 2
        assert placement.generation >= 2  # the second round started from the first (sticky)
        for node, ownership in zip("ab", members, strict=True):
            assigned = {tp.partition for tp in ownership._consumer.assignment()}
            assert assigned == placement.led_by(node)
    finally:
        for ownership in members:
            await ownership.stop()
        await supervisor.shutdown()
