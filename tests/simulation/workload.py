"""The simulation's workload: random requests of every kind, and what was sent, for the checks."""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Callable

from partition_processor.commands import Target, Terminate
from partition_processor.ids import awakeable_id, workflow_run_id
from tests.simulation.patches import PATCHED_KEYS, PatchFacts, patch_requests, tally_target
from tests.simulation.world import World

OBJECT_KEYS = ["alpha", "beta", "gamma", "delta"]
INVOCATIONS = 30


def run_world(
    seed: int, *, invocations: int = INVOCATIONS, crashes: int = 2, nodes: int = 1
) -> tuple[World, Facts]:
    """Run ``invocations`` random requests on a fresh world until it is quiescent; returns it
    and what was sent. Two nodes also hand partitions over (leaving zombie leaders)."""
    handoffs = 3 if nodes > 1 else 0
    world = World(seed, crashes=crashes, nodes=nodes, handoffs=handoffs)
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
            case "draw":
                return [now(kind, Target("Drawer", "draw"), b"")]
            case "tally":  # a counter that state patches also write
                return [now(kind, tally_target(chooser.choice(PATCHED_KEYS)), b"")]
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
        "draw",
        "tally",
        "tally",
    ]
    # Every run has calls, sends and naps: its outbox ships and its timers fire (the checks
    # demand that the faults injected into both happened).
    chosen = ["call", "send", "nap"] + [chooser.choice(kinds) for _ in range(invocations - 3)]
    requests = [r for kind in chosen for r in request(kind)]
    requests += patch_requests(world, facts.patches, chooser)
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
    patches: PatchFacts = dataclasses.field(default_factory=PatchFacts)


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
