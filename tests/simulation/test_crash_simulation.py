"""Seeded simulations: crashes, duplicated records, zombie leaders, lost acks, suspensions and
retries lose nothing and apply nothing twice (DESIGN §9); state patches apply once (also when
their record is appended again later), in their place in the log, never with a stale version or
under a running invocation (``patches.py``).

``CAIRN_SIM_SEEDS=N`` runs seeds 0..N-1 in each world (one node; two nodes handing partitions
over); ``CAIRN_SIM_SEED=S`` replays exactly seed S. A failure names its seed and the command that
replays it.
"""

from __future__ import annotations

import os

import pytest

from tests.simulation.checks import check_faults, check_liveness, check_safety
from tests.simulation.patches import expected_by_key
from tests.simulation.workload import run_world
from tests.simulation.world import World

DEFAULT_SEEDS = 400  # per world: 800 seeds, ~25 s of CPU, 30-60 s on 2 shared cores (measured)


def _seeds() -> list[int]:
    if (replay := os.environ.get("CAIRN_SIM_SEED")) is not None:
        return [int(replay)]
    return list(range(int(os.environ.get("CAIRN_SIM_SEEDS", DEFAULT_SEEDS))))


SEEDS = _seeds()


def _run_and_check(seed: int, nodes: int) -> World:
    try:
        world, facts = run_world(seed, nodes=nodes)
        planned = {"crash": 2, "handoff": 3 if nodes > 1 else 0}
        check_faults(world, planned)
        check_safety(world, facts)
        check_liveness(world)
    except AssertionError as failure:
        replay = f"CAIRN_SIM_SEED={seed} .venv/bin/python -m pytest tests/simulation -q"
        message = f"seed {seed} ({nodes} node(s)) failed: {failure}\n  replay: {replay}"
        raise AssertionError(message) from failure
    return world


@pytest.mark.parametrize("seed", SEEDS)
def test_crashes_and_duplicates_lose_nothing_and_apply_nothing_twice(seed: int) -> None:
    _run_and_check(seed, nodes=1)


@pytest.mark.parametrize("seed", SEEDS)
def test_leadership_moving_between_two_nodes_with_zombie_leaders(seed: int) -> None:
    """Two nodes; partitions are handed over now and then while the old leader goes on acting
    until it reads the new announcement (a zombie): its late records must change nothing."""
    _run_and_check(seed, nodes=2)


def test_the_same_seed_replays_the_same_run() -> None:
    first, _ = run_world(7, nodes=2)
    second, _ = run_world(7, nodes=2)
    assert first.trace == second.trace
    assert first.logs == second.logs


def test_zombie_leaders_propose_records_that_are_fenced() -> None:
    """Guards the fencing checks against a scheduler whose zombies stopped acting: across a few
    two-node seeds, zombies proposed records after a newer announcement (each dropped, as
    ``check_faults`` verifies per seed)."""
    fenced = [run_world(seed, nodes=2)[0].oracle.stale_epoch for seed in range(10)]
    assert sum(1 for count in fenced if count > 0) >= 8, fenced


def test_state_patches_are_queued_refused_and_applied() -> None:
    """Guards the patch checks against a workload whose patches stopped meeting the cases they
    are there for: across a few seeds, patches were appended while an invocation of their key
    ran, some were refused (a stale version) and some applied, and records of patches were
    appended again after other records of their key (each checked per seed by
    ``check_safety``)."""
    queued = refused = applied = copies = 0
    for seed in range(10):
        world, facts = run_world(seed, nodes=seed % 2 + 1)
        queued += facts.patches.queued
        copies += facts.patches.copies_after_others
        for expected in expected_by_key(world).values():
            refused += expected.refused
            applied += expected.applied
    counts = (queued, refused, applied, copies)
    assert queued >= 10 and refused >= 5 and applied >= 10 and copies >= 5, counts
