"""Seeded simulations: crashes, duplicated records, suspensions and retries lose nothing and apply
nothing twice (DESIGN §9). A failure names its seed; ``run_world(seed)`` replays it exactly."""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Callable

import pytest

from partition_processor import keys
from partition_processor.commands import Target, Terminate
from partition_processor.ids import awakeable_id, workflow_run_id
from partition_processor.journal import Failure, Success
from tests.simulation.world import World

OBJECT_KEYS = ["alpha", "beta", "gamma", "delta"]
SEEDS = range(40)


def run_world(
    seed: int, *, invocations: int = 40, crashes: int = 3, nodes: int = 1
) -> tuple[World, Facts]:
    """Run ``invocations`` random requests on a fresh world; returns it and what was sent."""
    world = World(seed, crashes=crashes, nodes=nodes)
    chooser = world.random
    facts = Facts()

    def now(kind: str, target: Target, argument: bytes, detail: object = None) -> Request:
        def submit() -> bool:
            submitted_ms = world.now_ms
            invocation_id = world.submit(target, argument)
            facts.submitted[invocation_id] = (kind, (detail, submitted_ms))
            return True

        return submit

    def request(kind: str) -> list[Request]:
        key = chooser.choice(OBJECT_KEYS)
        match kind:
            case "add":
                facts.expected_adds[key] += 1
                return [
                    now(kind, Target("Counter", "add", "virtual_object", "exclusive", key), b"1")
                ]
            case "call":
                facts.expected_adds[key] += 1
                return [now(kind, Target("Caller", "call"), key.encode())]
            case "send":
                facts.expected_adds[key] += 1
                delay = chooser.choice([0, 0, 30])
                return [now(kind, Target("Sender", "send"), f"{key}:{delay}".encode())]
            case "nap":
                nap = chooser.randint(1, 40)
                return [now(kind, Target("Napper", "nap"), str(nap).encode(), nap)]
            case "killed_nap":
                return _terminated_nap(world, facts, chooser.randint(5, 60), "kill")
            case "cancelled_nap":
                return _terminated_nap(world, facts, chooser.randint(5, 60), "cancel")
            case "idempotent_add":
                facts.expected_adds[key] += 1
                target = Target("Counter", "add", "virtual_object", "exclusive", key)
                idempotency_key = f"idem-{chooser.random()}"

                def retry() -> bool:
                    iid = world.submit(target, b"1", idempotency_key)
                    facts.submitted[iid] = ("idempotent_add", key)
                    return True

                return [retry] * chooser.randint(1, 3)  # the client retries (crash or not)
            case "awakeable":
                return _awakeable(world, facts)
            case _:
                return _workflow(world, facts, chooser)

    kinds = [
        "add",
        "call",
        "send",
        "nap",
        "killed_nap",
        "cancelled_nap",
        "awakeable",
        "workflow",
        "idempotent_add",
    ]
    requests = [r for _ in range(invocations) for r in request(chooser.choice(kinds))]
    chooser.shuffle(requests)  # retries and signals land anywhere, also after crashes
    world.run(requests)
    return world, facts


Request = Callable[[], bool]


@dataclasses.dataclass
class Facts:
    """What the workload sent, for the checks."""

    expected_adds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    submitted: dict[str, tuple[str, object]] = dataclasses.field(default_factory=dict)
    workflows: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # run → signals


def _terminated_nap(world: World, facts: Facts, nap_ms: int, mode: str) -> list[Request]:
    """A nap, then a kill or a cooperative cancel of it: it ends killed, or cancelled after its
    compensation, or rested if the request came too late."""
    ids: list[str] = []
    kind = "killed_nap" if mode == "kill" else "cancelled_nap"

    def nap() -> bool:
        handler = "nap" if mode == "kill" else "nap_cancellable"
        ids.append(world.submit(Target("Napper", handler), str(nap_ms).encode()))
        facts.submitted[ids[0]] = (kind, None)
        return True

    def terminate() -> bool:
        if not ids:
            return False
        world.ingress(ids[0], Terminate(ids[0], "kill" if mode == "kill" else "cancel"))
        return True

    return [nap, terminate]


def _awakeable(world: World, facts: Facts) -> list[Request]:
    """A waiter, and a resolver sent once the waiter's awakeable is in its journal."""
    ids: list[str] = []

    def wait() -> bool:
        ids.append(world.submit(Target("Waiter", "wait"), b""))
        facts.submitted[ids[0]] = ("awakeable", None)
        return True

    def resolve() -> bool:
        status = world.status(ids[0]) if ids else None
        if status is None or status.journal_length < 2:
            return False  # the id is published once the awakeable is journaled
        awakeable = awakeable_id(ids[0], 1)
        facts.submitted[world.submit(Target("Resolver", "resolve"), awakeable.encode())] = (
            "resolver",
            None,
        )
        return True

    return [wait, resolve]


def _workflow(world: World, facts: Facts, chooser: random.Random) -> list[Request]:
    """A workflow run and two signals resolving its promise, in random order."""
    key = f"flow-{len(facts.workflows)}"
    run_id = workflow_run_id("Flow", key)
    facts.workflows[run_id] = []

    def run() -> bool:
        world.submit(Target("Flow", "run", "workflow", "workflow", key), b"")
        facts.submitted[run_id] = ("workflow", key)
        return True

    def signal() -> bool:
        signal_id = world.submit(Target("Flow", "signal", "workflow", "shared", key), b"")
        facts.submitted[signal_id] = ("signal", key)
        facts.workflows[run_id].append(signal_id)
        return True

    requests: list[Request] = [run, signal, signal]
    chooser.shuffle(requests)
    return requests


@pytest.mark.parametrize("seed", SEEDS)
def test_crashes_and_duplicates_lose_nothing_and_apply_nothing_twice(seed: int) -> None:
    check_world(*run_world(seed), f"seed {seed}")


@pytest.mark.parametrize("seed", range(20))
def test_leadership_moving_between_two_nodes_with_zombie_leaders(seed: int) -> None:
    """Two nodes; partitions are taken over now and then while the old leader goes on acting
    until it reads the new announcement (a zombie): its late records must change nothing."""
    world, facts = run_world(seed, nodes=2)
    check_world(world, facts, f"seed {seed}, 2 nodes")
    for node in world.nodes[1:]:
        assert node.store.snapshot() == world.store.snapshot(), "the nodes' stores differ"


def check_world(world: World, facts: Facts, name: str) -> None:
    context = f"{name} (trace: {world.trace})"
    statuses = {s.invocation_id: s for s in world.statuses()}

    # Every request completed, with the result its handler produces.
    for invocation_id, (kind, _) in facts.submitted.items():
        status = statuses.get(invocation_id)
        assert status is not None, f"{context}: {kind} {invocation_id} lost"
        assert status.phase == "completed", f"{context}: {kind} {invocation_id} is {status.phase}"
        expected = EXPECTED_RESULTS.get(kind)
        if kind == "killed_nap":  # killed, unless the kill came after it rested
            assert status.result in (Success(b"rested"), Failure(409, "killed")), context
        elif kind == "cancelled_nap":  # cancelled after compensating, or rested first
            assert status.result in (Success(b"rested"), Failure(409, "cancelled")), context
            if status.result != Success(b"rested"):
                assert world.run_executions[(invocation_id, 2)] >= 1, f"{context}: no compensation"
        elif expected is not None:
            assert status.result == expected, f"{context}: {kind} got {status.result}"
        else:
            assert isinstance(status.result, Success), f"{context}: {kind} got {status.result}"

    # Each key's counter equals the adds sent to it (directly, by calls, by sends): none lost,
    # none applied twice; and the adds' results are exactly 1..n, each once.
    for key in OBJECT_KEYS:
        want = facts.expected_adds[key]
        stored = world.state("Counter", key, "n")
        assert int(stored or b"0") == want, f"{context}: {key} = {stored!r}, want {want}"
        results = sorted(
            int(s.result.value)
            for s in statuses.values()
            if s.target.service == "Counter"
            and s.target.key == key
            and isinstance(s.result, Success)
        )
        assert results == list(range(1, want + 1)), f"{context}: {key} results {results}"

    for invocation_id, (kind, detail) in facts.submitted.items():
        status = statuses[invocation_id]
        if kind == "call":  # its run step ran (at least once: a step is at-least-once)
            assert world.run_executions[(invocation_id, 2)] >= 1, context
        if kind == "nap":  # never woke early
            assert isinstance(detail, tuple)
            nap_ms, submitted_ms = detail
            assert isinstance(nap_ms, int) and isinstance(submitted_ms, int)
            assert status.modified_ms >= submitted_ms + nap_ms, f"{context}: woke early"

    # A workflow's promise resolves once: one signal succeeds, the other gets 409; the run saw
    # the value and kept it in its state.
    for run_id, signals in facts.workflows.items():
        outputs = sorted(statuses[s].result.value for s in signals)  # type: ignore[union-attr]
        assert outputs == [b"409", b"ok"], f"{context}: signals {outputs}"
        key = str(facts.submitted[run_id][1])
        assert world.state("Flow", key, "seen") == b'"go"', context

    # Nothing is left behind: no undelivered message, no queued invocation, no lock, no journal.
    for row_kind in (keys.Kind.OUTBOX, keys.Kind.INBOX, keys.Kind.LOCK, keys.Kind.JOURNAL):
        assert world.rows(row_kind) == 0, f"{context}: {row_kind.name} rows left"

    # A follower replaying each partition's log from the start, in other batch sizes, builds the
    # very same store: apply is deterministic, and the crashes left no trace in the state.
    assert world.replayed_store().snapshot() == world.store.snapshot(), context

    # An ingress caller never hears a wrong answer, and hears one whenever its node stayed up.
    for invocation_id in facts.submitted:
        heard = world.responses.get(invocation_id, [])
        assert all(r == statuses[invocation_id].result for r in heard), f"{context}: {heard}"
        if not world.trace:
            assert heard, f"{context}: no response for {invocation_id}"


EXPECTED_RESULTS = {
    "awakeable": Success(b'"woken"'),
    "resolver": Success(b"done"),
    "workflow": Success(b'"go"'),
    "nap": Success(b"rested"),
    "send": Success(b"sent"),
}


def test_the_same_seed_replays_the_same_run() -> None:
    first, _ = run_world(7)
    second, _ = run_world(7)
    assert first.trace == second.trace
    assert first.logs == second.logs


def test_the_simulation_does_crash_hand_over_and_duplicate() -> None:
    """Guards the checks above against a scheduler that stopped injecting faults."""
    crashed = sum(
        1 for seed in SEEDS[:10] if any(t.startswith("crash") for t in run_world(seed)[0].trace)
    )
    assert crashed >= 5
    handed_over = sum(
        1
        for seed in range(10)
        if any(t.startswith("handoff") for t in run_world(seed, nodes=2)[0].trace)
    )
    assert handed_over >= 5
    world, _ = run_world(3)
    payloads = [payload for log in world.logs for payload in log]
    assert len(payloads) > len(set(payloads))  # some records were appended twice
