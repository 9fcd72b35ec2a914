"""The sticky replica assignor (runtime.placement): stickiness, balance, failover choice."""

from __future__ import annotations

import math

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from runtime.cluster import PlacementAssignor
from runtime.placement import CAUGHT_UP_SLACK, Placement, place

P = 12


def members(*names: str, applied: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    return {n: (applied or {}).get(n, [-1] * P) for n in names}


def pairs(placement: Placement) -> set[tuple[int, str]]:
    return {(p, n) for p, nodes in enumerate(placement.replicas) for n in nodes}


def assert_balanced(placement: Placement, nodes: list[str], r: int) -> None:
    replicas = [len(placement.replicas_of(n)) for n in nodes]
    leaders = [len(placement.led_by(n)) for n in nodes]
    assert max(replicas) - min(replicas) <= 1, replicas
    assert max(leaders) - min(leaders) <= 1, leaders
    for nodes_of_p in placement.replicas:
        assert len(nodes_of_p) == r and len(set(nodes_of_p)) == r


def formed(*names: str, r: int = 2) -> Placement:
    """The placement after the nodes joined one by one (as a cluster starts)."""
    placement: Placement | None = None
    for i in range(len(names)):
        placement = place(members(*names[: i + 1]), placement, partitions=P, replication=r)
    assert placement is not None
    return placement


def test_fresh_three_nodes_are_balanced() -> None:
    placement = place(members("a", "b", "c"), None, partitions=P, replication=2)
    assert_balanced(placement, ["a", "b", "c"], 2)
    assert {len(placement.replicas_of(n)) for n in "abc"} == {8}
    assert placement.generation == 1


@pytest.mark.parametrize("r", [1, 2, 3])
def test_nodes_joining_one_by_one_end_balanced(r: int) -> None:
    placement = formed("a", "b", "c", "d", r=r)
    assert_balanced(placement, ["a", "b", "c", "d"], r)
    assert placement.generation == 4


def test_replication_is_capped_by_the_members() -> None:
    placement = place(members("a"), None, partitions=P, replication=3)
    assert placement.replicas == [["a"]] * P
    two = place(members("a", "b"), placement, partitions=P, replication=3)
    assert all(sorted(nodes) == ["a", "b"] for nodes in two.replicas)
    assert two.led_by("a") | two.led_by("b") == set(range(P))


@pytest.mark.parametrize("r", [1, 2, 3])
def test_a_join_moves_at_most_its_share(r: int) -> None:
    before = formed("a", "b", "c", r=r)
    after = place(members("a", "b", "c", "d"), before, partitions=P, replication=r)
    moved = pairs(after) - pairs(before)
    assert len(moved) <= math.ceil(P * r / 4)
    assert {n for _, n in moved} == {"d"}  # only the joiner gains replicas
    assert_balanced(after, ["a", "b", "c", "d"], r)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_a_leave_only_replaces_the_leavers_replicas(r: int) -> None:
    before = formed("a", "b", "c", "d", r=r)
    after = place(members("a", "b", "c"), before, partitions=P, replication=r)
    kept = {(p, n) for p, n in pairs(before) if n != "d"}
    assert kept <= pairs(after)  # every survivor's replica stays
    assert len(pairs(after) - kept) == len(before.replicas_of("d"))
    for p, nodes in enumerate(before.replicas):
        if nodes[0] != "d":
            assert after.replicas[p][0] == nodes[0]  # a surviving leader keeps its partition
    replicas = [len(after.replicas_of(n)) for n in "abc"]
    assert max(replicas) - min(replicas) <= 1


def test_failover_prefers_a_caught_up_standby() -> None:
    before = Placement(7, [["a", "b", "c"] for _ in range(P)])
    applied = {"b": [1000 - CAUGHT_UP_SLACK - 1] * P, "c": [1000] * P}
    after = place(members("b", "c", applied=applied), before, partitions=P, replication=3)
    assert [nodes[0] for nodes in after.replicas] == ["c"] * P
    assert after.generation == 8


def test_failover_between_caught_up_standbys_spreads_leaders() -> None:
    before = Placement(1, [["a", "b", "c"] for _ in range(P)])
    applied = {"b": [1000] * P, "c": [1000 - CAUGHT_UP_SLACK] * P}
    after = place(members("b", "c", applied=applied), before, partitions=P, replication=3)
    assert len(after.led_by("b")) == len(after.led_by("c")) == P // 2


def test_unchanged_members_keep_the_placement() -> None:
    before = formed("a", "b", "c")
    after = place(members("a", "b", "c"), before, partitions=P, replication=2)
    assert after.replicas == before.replicas
    assert after.generation == before.generation + 1


def test_no_members_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        place({}, None, partitions=P, replication=2)


def test_the_group_assignor_hands_the_whole_placement_to_every_member() -> None:
    """``PlacementAssignor`` as aiokafka drives it: metadata out, assign on the group's leader
    (one member sends bytes that are not ours), the placement back from each assignment."""
    topic = "cairn.log"
    a = PlacementAssignor("a", partitions=P, replication=2, applied=lambda: [7] * P)
    b = PlacementAssignor("b", partitions=P, replication=2, applied=lambda: [-1] * P)
    a.placement = formed("a")  # a saw the previous round: the new one starts from it
    metadata = {"m-a": a.metadata([topic]), "m-b": b.metadata([topic])}
    metadata["m-x"] = ConsumerProtocolMemberMetadata(1, [topic], b"not ours")
    assignments = b.assign(None, metadata)  # type: ignore[arg-type]
    for assignor, member in ((a, "m-a"), (b, "m-b")):
        assignor.on_assignment(assignments[member])
    assert a.placement == b.placement
    placement = a.placement
    assert placement is not None and placement.generation == 2
    assert {n for nodes in placement.replicas for n in nodes} == {"a", "b", "m-x"}
    for member, node in (("m-a", "a"), ("m-b", "b"), ("m-x", "m-x")):
        [(assigned_topic, partitions)] = assignments[member].assignment
        assert assigned_topic == topic and set(partitions) == placement.led_by(node)
