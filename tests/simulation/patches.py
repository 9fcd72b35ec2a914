"""State patches in the simulation: requests patching Tally objects while Tally/add invocations
of the same keys run, the model of what each key's state must be, and its check.

The model follows the log alone (``Oracle.object_queues``): an object runs its exclusive
invocations and applies its patches one at a time in log order, a patch whose version is not the
state's at its turn is refused, and nothing changes an object's state under a running invocation.
Some patches' records are appended again later, after other records of their key (``_copy``): a
patch applies once, at its first record, however often the log holds it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from partition_processor import codes, keys
from partition_processor.commands import (
    End,
    Envelope,
    IngressSink,
    IngressSource,
    Invoke,
    InvokerEffect,
    PatchState,
    Target,
    decode_envelope,
    encode_envelope,
)
from partition_processor.journal import Failure, Result, Success
from partition_processor.tables import decode_lock, state_version
from partition_processor.values import InvocationStatus
from tests.simulation.world import Caller, World

TALLY = "Tally"
PATCHED_KEYS = ["epsilon", "zeta"]
PATCHES = 5  # per run, besides the Tally adds the workload mixes in
BUSY_TRIES = 200  # a patch meant for a running invocation waits this many turns for one
COPY_RATE = 0.5  # of the patches, this share have their record appended again later

Request = Callable[[], bool]


def tally_target(key: str) -> Target:
    return Target(TALLY, "add", "virtual_object", "exclusive", key)


def append_patch(
    world: World, service: str, key: str, new_state: dict[str, bytes], version: str | None
) -> bytes:
    """What the admin's state patch appends (``Gateway.patch_state``): to the object's
    partition, from the ingress, with a sink for its outcome and an id of its own. Returns the
    record (to append again later)."""
    world.requests += 1
    sink = IngressSink(world.random.choice(world.nodes).node_id, f"request-{world.requests}")
    world.patch_callers.append(Caller(f"patch {service}/{key}", sink, 0))
    command = PatchState(service, key, new_state, version, sink, f"patch-{world.requests}")
    payload = encode_envelope(Envelope(IngressSource(sink.node), world.now_ms, command))
    world.append(world.object_partition(service, key), [payload])
    return payload


def object_state(world: World, service: str, key: str) -> dict[str, bytes]:
    prefix = keys.state_prefix(world.object_partition(service, key), service, key)
    return {keys.state_name_of(k, prefix): v for k, v in world.store.scan(prefix)}


def locked_at_tail(world: World, service: str, key: str) -> bool:
    """Whether a record appended now finds the object's lock held: the first node's store has it
    held, and no record that node has yet to apply ends the holder."""
    p = world.object_partition(service, key)
    raw = world.store.get(keys.lock_key(p, service, key))
    if raw is None:
        return False
    holder = decode_lock(raw).holder
    for payload in world.logs[p][world.nodes[0].views[p].cursor :]:
        command = decode_envelope(payload).command
        if isinstance(command, InvokerEffect) and command.invocation_id == holder:
            if isinstance(command.effect, End):
                return False
    return True


@dataclasses.dataclass
class PatchFacts:
    """What the patch requests did, for the guards that the interesting cases happen."""

    sent: int = 0
    queued: int = 0  # sent while an invocation of the key ran (the record finds the lock held)
    copies: int = 0  # records of patches appended again later
    copies_after_others: int = 0  # … after other records of the same key (adds, patches)
    versions: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # seen, per key


def patch_requests(world: World, facts: PatchFacts, chooser: random.Random) -> list[Request]:
    """``PATCHES`` patches of random Tally keys: with the version the key has now, with one it
    had before (stale, unless nothing changed since), or without one; some wait until an
    invocation of the key runs."""
    requests: list[Request] = []
    for number in range(PATCHES):
        key = chooser.choice(PATCHED_KEYS)
        mode = chooser.choice(["current", "current", "stale", "unconditional"])
        busy = chooser.random() < 0.5
        value = str(chooser.randint(100, 10_000)).encode()
        sent: list[bytes] = []  # the patch's record, once appended
        requests.append(_patch(world, facts, key, mode, busy, value, f"p{number}", sent))
        if chooser.random() < COPY_RATE:
            requests.append(_copy(world, facts, key, sent))
    return requests


def _copy(world: World, facts: PatchFacts, key: str, sent: list[bytes]) -> Request:
    """Append the patch's record again once other records of its key followed it (a counter
    add: a copy that applied again would undo it), or after ``BUSY_TRIES`` turns anyway."""
    tries = [0]
    others_before = [0]

    def send() -> bool:
        if not sent:
            return False
        queue = world.oracle.object_queues.get((TALLY, key), [])
        if not tries[0]:
            others_before[0] = len(queue)
        others = len(queue) > others_before[0]
        if not others and tries[0] < BUSY_TRIES:
            tries[0] += 1
            return False
        world.append_again(world.object_partition(TALLY, key), sent[0])
        facts.copies += 1
        facts.copies_after_others += others
        return True

    return send


def _patch(
    world: World,
    facts: PatchFacts,
    key: str,
    mode: str,
    busy: bool,
    value: bytes,
    label: str,
    sent: list[bytes],
) -> Request:
    tries = [0]

    def send() -> bool:
        locked = locked_at_tail(world, TALLY, key)
        if busy and not locked and tries[0] < BUSY_TRIES:
            tries[0] += 1
            return False
        seen = facts.versions.setdefault(key, [state_version({}.items())])
        now = state_version(object_state(world, TALLY, key).items())
        version = {"current": now, "stale": seen[0], "unconditional": None}[mode]
        seen.append(now)
        sent.append(append_patch(world, TALLY, key, {"n": value, "patch": label.encode()}, version))
        facts.sent += 1
        facts.queued += locked
        return True

    return send


@dataclasses.dataclass
class Expected:
    """One object's history as the model runs it."""

    state: dict[str, bytes] = dataclasses.field(default_factory=dict)
    results: dict[str, bytes] = dataclasses.field(default_factory=dict)  # add → its result
    outcomes: dict[str, list[Result]] = dataclasses.field(default_factory=dict)  # per request
    applied: int = 0
    refused: int = 0


def model(queue: list[Invoke | PatchState]) -> Expected:
    expected = Expected()
    for command in queue:
        if isinstance(command, Invoke):
            n = int(expected.state.get("n", b"0")) + 1
            expected.state["n"] = str(n).encode()
            expected.results[command.invocation_id] = expected.state["n"]
            continue
        outcome: Result
        if command.version is not None and command.version != state_version(expected.state.items()):
            outcome = Failure(codes.STATE_VERSION_MISMATCH, "")
            expected.refused += 1
        else:
            expected.state = dict(command.new_state)
            outcome = Success(state_version(expected.state.items()).encode())
            expected.applied += 1
        assert command.sink is not None
        expected.outcomes.setdefault(command.sink.request_id, []).append(outcome)
    return expected


def expected_by_key(world: World) -> dict[str, Expected]:
    return {key: model(world.oracle.object_queues.get((TALLY, key), [])) for key in PATCHED_KEYS}


def check_patches(world: World, statuses: dict[str, InvocationStatus]) -> None:
    """Each Tally key's state is the model's (every patch applied once, in its place in the log,
    a stale one never); every add read and wrote what the model says (no patch under it); a
    patch's requester heard only the outcome the model gives its record."""
    outcomes: dict[str, list[Result]] = {}
    for key, expected in expected_by_key(world).items():
        stored = object_state(world, TALLY, key)
        assert stored == expected.state, f"{TALLY}/{key} = {stored}, want {expected.state}"
        for invocation_id, want in expected.results.items():
            result = statuses[invocation_id].result
            assert result == Success(want), (
                f"{TALLY}/{key} add {invocation_id}: {result} != {want!r}"
            )
        outcomes.update(expected.outcomes)
    for caller in world.patch_callers:
        given = [_comparable(o) for o in outcomes.get(caller.sink.request_id, [])]
        assert given, f"{caller.invocation_id} {caller.sink.request_id}: its record never applied"
        for heard in caller.heard:
            assert _comparable(heard) in given, f"{caller.invocation_id} heard {heard}, not {given}"


def _comparable(outcome: Result) -> Result:
    """A refusal compares by its code (its message is the processor's wording)."""
    return Failure(outcome.code, "") if isinstance(outcome, Failure) else outcome
