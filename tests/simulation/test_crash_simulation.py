"""Seeded simulations: crashes, duplicated records, suspensions and retries lose nothing and apply
nothing twice (DESIGN §9). A failure names its seed; ``run_world(seed)`` replays it exactly."""

from __future__ import annotations

import collections

import pytest

from partition_processor import keys
from partition_processor.commands import Target
from partition_processor.journal import Success
from tests.simulation.world import World

OBJECT_KEYS = ["alpha", "beta", "gamma", "delta"]
SEEDS = range(40)


def run_world(seed: int, *, invocations: int = 40, crashes: int = 3) -> tuple[World, dict]:
    world = World(seed, crashes=crashes)
    chooser = world.random
    expected_adds: collections.Counter[str] = collections.Counter()
    submitted: dict[str, tuple[str, object]] = {}

    def submit(kind: str) -> None:
        key = chooser.choice(OBJECT_KEYS)
        if kind == "add":
            target, argument = Target("Counter", "add", "virtual_object", "exclusive", key), b"1"
        elif kind == "call":
            target, argument = Target("Caller", "call"), key.encode()
        elif kind == "send":
            delay = chooser.choice([0, 0, 30])
            target, argument = Target("Sender", "send"), f"{key}:{delay}".encode()
        else:
            nap = chooser.randint(1, 40)
            target, argument = Target("Napper", "nap"), str(nap).encode()
            submitted[world.submit(target, argument)] = ("nap", (nap, world.now_ms))
            return
        expected_adds[key] += 1
        submitted[world.submit(target, argument)] = (kind, key)

    kinds = [chooser.choice(["add", "add", "call", "send", "nap"]) for _ in range(invocations)]
    world.run([lambda k=k: submit(k) for k in kinds])  # type: ignore[misc]
    return world, {"expected_adds": expected_adds, "submitted": submitted}


@pytest.mark.parametrize("seed", SEEDS)
def test_crashes_and_duplicates_lose_nothing_and_apply_nothing_twice(seed: int) -> None:
    world, facts = run_world(seed)
    context = f"seed {seed} (trace: {world.trace})"
    statuses = {s.invocation_id: s for s in world.statuses()}

    # Every submitted invocation completed, with a success.
    for invocation_id, (kind, _) in facts["submitted"].items():
        status = statuses.get(invocation_id)
        assert status is not None, f"{context}: {kind} {invocation_id} lost"
        assert status.phase == "completed", f"{context}: {kind} {invocation_id} is {status.phase}"
        assert isinstance(status.result, Success), f"{context}: {status.result}"

    # Each key's counter equals the adds sent to it (directly, by calls, by sends): none lost,
    # none applied twice; and the adds' results are exactly 1..n, each once.
    for key in OBJECT_KEYS:
        expected = facts["expected_adds"][key]
        stored = world.state("Counter", key, "n")
        assert int(stored or b"0") == expected, f"{context}: {key} = {stored!r}, want {expected}"
        results = sorted(
            int(s.result.value)
            for s in statuses.values()
            if s.target.service == "Counter" and s.target.key == key
        )
        assert results == list(range(1, expected + 1)), f"{context}: {key} results {results}"

    # A caller's result is its callee's, journaled once; its run step ran at least once.
    for invocation_id, (kind, detail) in facts["submitted"].items():
        status = statuses[invocation_id]
        if kind == "call":
            assert world.run_executions[(invocation_id, 2)] >= 1, context
        if kind == "nap":
            nap_ms, submitted_ms = detail  # type: ignore[misc]
            assert status.modified_ms >= submitted_ms + nap_ms, f"{context}: woke early"

    # Nothing is left behind: no undelivered message, no queued invocation, no lock.
    for kind in (keys.Kind.OUTBOX, keys.Kind.INBOX, keys.Kind.LOCK, keys.Kind.JOURNAL):
        assert world.rows(kind) == 0, f"{context}: {kind.name} rows left"
    # An ingress caller hears back once at most (a response due while the node was down is not
    # sent again: the client attaches), and always when nothing crashed meanwhile.
    for invocation_id in facts["submitted"]:
        assert len(world.responses.get(invocation_id, [])) <= 1, context
        if not world.trace:
            assert len(world.responses.get(invocation_id, [])) == 1, context


def test_the_same_seed_replays_the_same_run() -> None:
    first, _ = run_world(7)
    second, _ = run_world(7)
    assert first.trace == second.trace
    assert [p.log for p in first.partitions] == [p.log for p in second.partitions]


def test_the_simulation_does_crash_and_duplicate() -> None:
    """Guards the checks above against a scheduler that stopped injecting faults."""
    crashed = sum(1 for seed in SEEDS[:10] if "crash" in run_world(seed)[0].trace)
    assert crashed >= 5
    world, _ = run_world(3)
    payloads = [payload for p in world.partitions for payload in p.log]
    assert len(payloads) > len(set(payloads))  # some records were appended twice
