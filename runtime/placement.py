"""Replica placement (DESIGN §8): which nodes apply which partition, and which one leads it.

A pure function of the group's members and the previous placement, so the sticky rules can be
tested without a broker; ``runtime.cluster`` runs it inside the consumer group's assignment.

The rules, in order:
1. Every replica that is still a member stays (sticky); a surviving leader keeps leading, so its
   partition keeps its epoch and its running attempts.
2. A partition whose leader left is led by a surviving replica: a caught-up one (within
   ``CAUGHT_UP_SLACK`` records of the best applied position reported) first, then the one that
   leads fewest partitions.
3. Holes (a replica left, a new partition, R raised) go to the node with the fewest replicas,
   preferring one that already applied the partition furthest (it has local state to continue).
4. Replicas are balanced to ±1 per node by moving standbys (never a leader's replica while a
   standby can move) from the fullest to the emptiest node.
5. Leaders are balanced to ±1 (a leader hands over to one of its standbys), but only in a round
   where a node joined: a leave never moves a surviving leader.
"""

from __future__ import annotations

import msgspec

# A standby this close to the best reported position counts as caught up: positions come from
# the members' join metadata, a moment old, and a claim replays the rest anyway.
CAUGHT_UP_SLACK = 100


class Placement(msgspec.Struct, frozen=True):
    """Partition p's replicas are ``replicas[p]``: the leader first, then its standbys."""

    generation: int
    replicas: list[list[str]]

    def leader(self, partition: int) -> str | None:
        nodes = self.replicas[partition] if partition < len(self.replicas) else []
        return nodes[0] if nodes else None

    def replicas_of(self, node: str) -> set[int]:
        return {p for p, nodes in enumerate(self.replicas) if node in nodes}

    def led_by(self, node: str) -> set[int]:
        return {p for p, nodes in enumerate(self.replicas) if nodes and nodes[0] == node}


def place(
    members: dict[str, list[int]],
    previous: Placement | None,
    *,
    partitions: int,
    replication: int,
) -> Placement:
    """The new placement for ``members`` (node id -> applied position per partition, -1 where
    it has none), starting from ``previous``."""
    if not members:
        raise ValueError("a placement needs at least one member")
    if replication < 1:
        raise ValueError("replication must be at least 1")
    nodes = sorted(members)
    r = min(replication, len(nodes))
    before = previous.replicas if previous is not None else []
    old_members = {n for replicas in before for n in replicas}
    joined = {n for n in nodes if n not in old_members} if previous is not None else set()

    def applied(node: str, partition: int) -> int:
        positions = members[node]
        return positions[partition] if partition < len(positions) else -1

    # 1. Survivors stay, in order (leader first); extra replicas (R lowered) drop from the end.
    replicas = [
        [n for n in (before[p] if p < len(before) else []) if n in members][:r]
        for p in range(partitions)
    ]
    previous_leader = [
        before[p][0] if p < len(before) and before[p] else None for p in range(partitions)
    ]

    def leader_counts() -> dict[str, int]:
        counts = dict.fromkeys(nodes, 0)
        for rs in replicas:
            if rs:
                counts[rs[0]] += 1
        return counts

    def replica_counts() -> dict[str, int]:
        counts = dict.fromkeys(nodes, 0)
        for rs in replicas:
            for n in rs:
                counts[n] += 1
        return counts

    # 2. Failover: a partition whose leader left is led by its most caught-up survivor.
    for p in range(partitions):
        rs = replicas[p]
        if not rs or rs[0] == previous_leader[p]:
            continue
        best = max(applied(n, p) for n in rs)
        counts = leader_counts()
        caught_up = [n for n in rs if applied(n, p) >= best - CAUGHT_UP_SLACK]
        chosen = min(caught_up, key=lambda n: (counts[n], -applied(n, p), n))
        rs.remove(chosen)
        rs.insert(0, chosen)

    # 3. Holes: to the node with the fewest replicas (an unled partition: fewest leaders first).
    for p in range(partitions):
        rs = replicas[p]
        while len(rs) < r:
            counts, leads = replica_counts(), leader_counts()
            candidates = [n for n in nodes if n not in rs]
            if rs:
                chosen = min(candidates, key=lambda n: (counts[n], -applied(n, p), n))
            else:
                chosen = min(candidates, key=lambda n: (leads[n], counts[n], -applied(n, p), n))
            rs.append(chosen)

    # 4. Replicas ±1: move a standby from the fullest node to the emptiest that lacks it.
    for _ in range(partitions * r):
        counts = replica_counts()
        low = min(nodes, key=lambda n: (counts[n], n))
        high = max(nodes, key=lambda n: (counts[n], n))
        if counts[high] - counts[low] <= 1:
            break
        movable = [
            p for p in range(partitions) if high in replicas[p][1:] and low not in replicas[p]
        ]
        if not movable:
            movable = [
                p for p in range(partitions) if high in replicas[p] and low not in replicas[p]
            ]
            if not movable:
                break
        leads = leader_counts()
        # Where the emptiest node can later take leadership from the busiest leader.
        p = max(movable, key=lambda q: (applied(low, q), leads[replicas[q][0]], -q))
        rs = replicas[p]
        if rs[0] == high and len(rs) > 1:
            rs[0], rs[1] = rs[1], rs[0]  # its standby leads; the fullest node's replica moves
        rs[rs.index(high)] = low

    # 5. Leaders ±1, only in a round where nodes joined (a leave never moves a surviving
    #    leader): leadership passes from the busiest leader to a node leading at least two
    #    fewer, along the shortest chain of "leader hands one partition to its standby".
    for _ in range(partitions if joined else 0):
        chain = _leader_chain(replicas, leader_counts())
        if chain is None:
            break
        for p, standby in chain:
            rs = replicas[p]
            i = rs.index(standby)
            rs[0], rs[i] = rs[i], rs[0]

    generation = previous.generation + 1 if previous is not None else 1
    return Placement(generation, replicas)


def _leader_chain(
    replicas: list[list[str]], counts: dict[str, int]
) -> list[tuple[int, str]] | None:
    """Hand-overs (partition, standby that takes it) from a busiest leader to a node leading
    at least two fewer, shortest first (None: leaders are balanced, or no chain exists)."""
    top = max(counts.values())
    starts = sorted(n for n, c in counts.items() if c == top)
    paths: dict[str, list[tuple[int, str]]] = {n: [] for n in starts}
    frontier = list(starts)
    while frontier:
        following: list[str] = []
        for node in frontier:
            for p, rs in enumerate(replicas):
                if not rs or rs[0] != node:
                    continue
                for standby in rs[1:]:
                    if standby in paths:
                        continue
                    paths[standby] = paths[node] + [(p, standby)]
                    if counts[standby] <= top - 2:
                        return paths[standby]
                    following.append(standby)
        frontier = following
    return None
