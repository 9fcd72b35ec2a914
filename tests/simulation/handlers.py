"""The simulated services: handlers written as generators of journal commands.

Each receives its input and the clock at the start of the attempt, yields the commands it makes
(receiving each one's completion, if it has one) and ends with ``Output``, as the SDK would.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

from partition_processor.commands import ResolvedTarget, RetryPolicy, Target
from partition_processor.journal import (
    Awakeable,
    Call,
    CallTarget,
    CompleteAwakeable,
    CompletePromise,
    Completion,
    Failure,
    GetPromise,
    GetState,
    JournalCommand,
    OneWayCall,
    Output,
    Run,
    SetState,
    Sleep,
    Success,
)

RETAIN_MS = 10**12  # results are kept so the checks can read them
FAST_RETRY = RetryPolicy(initial_interval_ms=5, factor=2.0, max_interval_ms=50)

Script = Generator[JournalCommand, Completion | None, None]


def counter_add(argument: bytes, now_ms: int) -> Script:
    """Counter/add (exclusive): n += 1, returns the new n."""
    current = yield GetState("n")
    n = int(current.value) if isinstance(current, Success) else 0
    yield SetState("n", str(n + 1).encode())
    yield Output(Success(str(n + 1).encode()))


def tally_add(argument: bytes, now_ms: int) -> Script:
    """Tally/add (exclusive), the counter the simulation also patches: n += 1, then reads n
    back. A patch applied while it runs shows in its result (``torn:`` and what it read)."""
    current = yield GetState("n")
    n = int(current.value) if isinstance(current, Success) else 0
    mine = str(n + 1).encode()
    yield SetState("n", mine)
    again = yield GetState("n")
    seen = again.value if isinstance(again, Success) else b"(none)"
    yield Output(Success(mine if seen == mine else b"torn:" + seen))


def _counter(key: str) -> ResolvedTarget:
    target = Target("Counter", "add", "virtual_object", "exclusive", key)
    return ResolvedTarget(target, FAST_RETRY, RETAIN_MS)


def caller_call(argument: bytes, now_ms: int) -> Script:
    """Caller/call: calls Counter/add on key ``argument``, then a ``run`` step, returns the sum."""
    result = yield Call(CallTarget("Counter", "add", argument.decode()), b"1")
    assert isinstance(result, Success), result
    noted = yield Run("note")
    assert isinstance(noted, Success), noted
    yield Output(result)


def drawer_draw(argument: bytes, now_ms: int) -> Script:
    """Drawer/draw: returns what its ``run`` step drew (a value that differs per execution)."""
    drawn = yield Run("draw")
    assert isinstance(drawn, Success), drawn
    yield Output(drawn)


def sender_send(argument: bytes, now_ms: int) -> Script:
    """Sender/send: a one-way (sometimes delayed) Counter/add; argument is ``key:delay_ms``."""
    key, delay = argument.decode().split(":")
    invoke_at = now_ms + int(delay) if int(delay) else 0
    yield OneWayCall(CallTarget("Counter", "add", key), b"1", invoke_at_ms=invoke_at)
    yield Output(Success(b"sent"))


def napper_nap(argument: bytes, now_ms: int) -> Script:
    yield Sleep(wake_up_ms=now_ms + int(argument))
    yield Output(Success(b"rested"))


def napper_nap_cancellable(argument: bytes, now_ms: int) -> Script:
    """Napper/nap_cancellable: a cancelled nap runs its compensation, then fails with 409."""
    slept = yield Sleep(wake_up_ms=now_ms + int(argument))
    if isinstance(slept, Failure):
        compensated = yield Run("compensate")
        assert isinstance(compensated, Success), compensated
        yield Output(Failure(409, "cancelled"))
    else:
        yield Output(Success(b"rested"))


def waiter_wait(argument: bytes, now_ms: int) -> Script:
    """Waiter/wait: returns what its awakeable (entry 1) is resolved with."""
    value = yield Awakeable()
    assert isinstance(value, Success), value
    yield Output(value)


def resolver_resolve(argument: bytes, now_ms: int) -> Script:
    """Resolver/resolve: resolves the awakeable whose id is ``argument``."""
    yield CompleteAwakeable(argument.decode(), Success(b'"woken"'))
    yield Output(Success(b"done"))


def flow_run(argument: bytes, now_ms: int) -> Script:
    """Flow/run (a workflow): waits for promise ``p``, keeps it in state, returns it."""
    value = yield GetPromise("p")
    assert isinstance(value, Success), value
    yield SetState("seen", value.value)
    yield Output(value)


def flow_signal(argument: bytes, now_ms: int) -> Script:
    """Flow/signal (shared): resolves promise ``p``; ``409`` when it was resolved already."""
    outcome = yield CompletePromise("p", Success(b'"go"'))
    yield Output(Success(b"409" if isinstance(outcome, Failure) else b"ok"))


SCRIPTS: dict[tuple[str, str], Callable[[bytes, int], Script]] = {
    ("Counter", "add"): counter_add,
    ("Tally", "add"): tally_add,
    ("Caller", "call"): caller_call,
    ("Sender", "send"): sender_send,
    ("Drawer", "draw"): drawer_draw,
    ("Napper", "nap"): napper_nap,
    ("Napper", "nap_cancellable"): napper_nap_cancellable,
    ("Waiter", "wait"): waiter_wait,
    ("Resolver", "resolve"): resolver_resolve,
    ("Flow", "run"): flow_run,
    ("Flow", "signal"): flow_signal,
}


def needs_completion(command: JournalCommand) -> bool:
    return isinstance(
        command, GetState | Call | Sleep | Run | Awakeable | GetPromise | CompletePromise
    )


def resolved_target(command: JournalCommand) -> ResolvedTarget | None:
    if isinstance(command, Call | OneWayCall) and command.target.service == "Counter":
        return _counter(command.target.key or "")
    return None
