"""``ctx.random()`` and ``ctx.uuid()`` are seeded from Start.random_seed on first use (issue 10:
not per context): the same sequence on every attempt, whichever is asked first."""

from __future__ import annotations

import random
import uuid

from proto import endpoint_pb2 as pb
from sdk._engine.machine import InvocationMachine
from sdk.context import Context
from sdk.invocation import InvocationSession


def _context(seed: int) -> Context:
    start = pb.Start(invocation_id="inv_test", known_entries=1, random_seed=seed)
    entry = pb.JournalEntry(index=0, command=pb.JournalCommand(input=pb.InputCommand(value=b"")))
    return Context(InvocationSession(InvocationMachine(start, [entry]), 60.0))


def test_random_and_uuid_follow_the_seed() -> None:
    expected = random.Random(42)
    ctx = _context(42)
    assert ctx.uuid() == uuid.UUID(int=expected.getrandbits(128), version=4)
    assert ctx.random() is ctx.random()
    assert ctx.random().random() == expected.random()
    other = _context(42)  # another attempt of the same invocation: the same values
    assert other.random().getrandbits(128) == random.Random(42).getrandbits(128)
    assert _context(43).random().random() != random.Random(42).random()
