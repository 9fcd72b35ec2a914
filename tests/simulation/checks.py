"""The simulation's checkers, separate from the system under test (DESIGN §9, STYLE tests (2)).

``check_faults``: every planned fault happened, and each met the guard meant for it (the counts
the processor reports equal the oracle's). ``check_safety``: nothing lost, nothing applied twice,
every result right. ``check_liveness``: once the faults healed, every invocation completed and
every caller whose node stayed up heard its answer.
"""

from __future__ import annotations

from partition_processor import keys
from partition_processor.journal import Failure, Success
from partition_processor.values import InvocationStatus
from tests.simulation.patches import check_patches
from tests.simulation.workload import OBJECT_KEYS, Facts
from tests.simulation.world import World

EXPECTED_RESULTS = {
    "awakeable": Success(b'"woken"'),
    "resolver": Success(b"done"),
    "workflow": Success(b'"go"'),
    "nap": Success(b"rested"),
    "send": Success(b"sent"),
}


def check_faults(world: World, planned: dict[str, int]) -> None:
    """Each planned fault happened as many times as planned, and the records it produced were
    dropped by the guard meant for them, exactly as many as the oracle counted."""
    for kind, count in planned.items():
        assert world.faults_done[kind] == count, f"{kind}: {world.faults_done[kind]} of {count}"
    for kind in ("duplicate", "lost_ship_ack", "lost_timer_ack"):
        assert world.faults_done[kind] > 0, f"no {kind} happened"
    oracle = world.oracle
    assert oracle.producer_repeats > 0, "no outbox message was shipped twice"
    _, replayed = world.replayed()
    for name, stats in [("replay", replayed), *((n.name, n.stats) for n in world.nodes)]:
        assert stats.stale_epoch == oracle.stale_epoch, (
            f"{name}: {stats.stale_epoch} stale leader records dropped, "
            f"{oracle.stale_epoch} were proposed after a newer announcement"
        )
        assert stats.producer_repeats == oracle.producer_repeats, (
            f"{name}: {stats.producer_repeats} outbox repeats dropped, "
            f"{oracle.producer_repeats} were shipped"
        )
        assert stats.undecodable == 0, name


def check_safety(world: World, facts: Facts) -> None:
    statuses = {s.invocation_id: s for s in world.statuses()}
    _check_results(world, facts, statuses)

    # Each key's counter equals the adds sent to it (directly, by calls, by sends): none lost,
    # none applied twice; and the adds' results are exactly 1..n, each once.
    for key in OBJECT_KEYS:
        want = facts.expected_adds[key]
        stored = world.state("Counter", key, "n")
        assert int(stored or b"0") == want, f"{key} = {stored!r}, want {want}"
        results = sorted(
            int(s.result.value)
            for s in statuses.values()
            if s.target.service == "Counter"
            and s.target.key == key
            and isinstance(s.result, Success)
        )
        assert results == list(range(1, want + 1)), f"{key} results {results}"

    check_patches(world, statuses)

    # A workflow's promise resolves once: one signal succeeds, the other gets 409; the run saw
    # the value and kept it in its state.
    for run_id, signals in facts.workflows.items():
        outputs = sorted(statuses[s].result.value for s in signals)  # type: ignore[union-attr]
        assert outputs == [b"409", b"ok"], f"signals {outputs}"
        key = str(facts.submitted[run_id][1])
        assert world.state("Flow", key, "seen") == b'"go"'

    # Nothing is left behind: no undelivered message, no queued invocation, no lock, no journal,
    # and no timer but retention purges (a timer fires once: its row goes when it fires).
    for row_kind in (keys.Kind.OUTBOX, keys.Kind.INBOX, keys.Kind.LOCK, keys.Kind.JOURNAL):
        assert not world.rows(row_kind), f"{row_kind.name} rows left"
    timers = [keys.parse_timer_key(k) for k in world.rows(keys.Kind.TIMER)]
    assert all(tid.startswith("purge:") for _, tid in timers), f"timers left: {timers}"

    # A follower replaying each partition's log from the start, in other batch sizes, builds the
    # very same store: apply is deterministic, and the crashes left no trace in the state. All
    # nodes' stores are that same store.
    replayed, _ = world.replayed()
    assert replayed.snapshot() == world.store.snapshot(), "a replay builds another store"
    for node in world.nodes[1:]:
        assert node.store.snapshot() == world.store.snapshot(), f"node {node.name} differs"

    # An ingress caller never hears a wrong answer.
    for caller in world.callers:
        result = statuses[caller.invocation_id].result
        assert all(r == result for r in caller.heard), f"{caller}: {result}"


def _check_results(world: World, facts: Facts, statuses: dict[str, InvocationStatus]) -> None:
    """Every request completed, with the result its handler produces."""
    for invocation_id, (kind, detail) in facts.submitted.items():
        status = statuses.get(invocation_id)
        assert status is not None, f"{kind} {invocation_id} lost"
        assert status.phase == "completed", f"{kind} {invocation_id} is {status.phase}"
        expected = EXPECTED_RESULTS.get(kind)
        if kind == "killed_nap":  # killed, unless the kill came after it rested
            assert status.result in (Success(b"rested"), Failure(409, "killed"))
        elif kind == "cancelled_nap":  # cancelled after compensating, or rested first
            assert status.result in (Success(b"rested"), Failure(409, "cancelled"))
            if status.result != Success(b"rested"):
                assert world.run_executions[(invocation_id, 2)] >= 1, "no compensation"
        elif kind == "draw":  # the result its journal kept: the first admitted execution's
            kept = world.oracle.run_results.get((invocation_id, 1))
            assert status.result == kept, f"draw {invocation_id}: {status.result} != {kept}"
        elif expected is not None:
            assert status.result == expected, f"{kind} got {status.result}"
        else:
            assert isinstance(status.result, Success), f"{kind} got {status.result}"
        if kind == "call":  # its run step ran (at least once: a step is at-least-once)
            assert world.run_executions[(invocation_id, 2)] >= 1
        if kind == "nap":  # never woke early
            assert isinstance(detail, tuple)
            nap_ms, submitted_ms = detail
            assert isinstance(nap_ms, int) and isinstance(submitted_ms, int)
            assert status.modified_ms >= submitted_ms + nap_ms, "woke early"


def check_liveness(world: World) -> None:
    """After the faults healed: a caller whose node stayed up and whose partition kept its
    leader heard its answer directly; the others, once re-attached, hear it too."""
    reattached = {id(c) for c in world.reattach()}
    for caller in world.callers:
        if world.alive(caller.sink.node):
            how = "after re-attaching" if id(caller) in reattached else "directly"
            assert caller.heard, f"{caller.invocation_id}: no answer {how} ({caller.sink})"
