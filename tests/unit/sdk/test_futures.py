"""Futures and combinators as restate-sdk 1.3 has them, over the real engine (no runtime).

The runtime's side is played by notifications fed to the session, as the transport does.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import sdk as restate
from proto import endpoint_pb2 as pb
from sdk._engine.machine import InvocationMachine
from sdk.invocation import InvocationSession


def _context() -> tuple[restate.Context, InvocationSession]:
    start = pb.Start(invocation_id="inv_test", known_entries=1)
    input_entry = pb.JournalEntry(
        index=0, command=pb.JournalCommand(input=pb.InputCommand(value=b""))
    )
    session = InvocationSession(InvocationMachine(start, [input_entry]), 60.0)
    return restate.Context(session), session


def _complete(session: InvocationSession, index: int, seq: int, completion: pb.Completion) -> None:
    notification = pb.Notification(index=index, completion=completion, completion_seq=seq)
    session.on_runtime_message(pb.RuntimeMessage(notification=notification))


def _value(raw: bytes) -> pb.Completion:
    return pb.Completion(value=raw)


def _failure(message: str, code: int, metadata: dict[str, str]) -> pb.Completion:
    return pb.Completion(failure=pb.Failure(code=code, message=message, metadata=metadata))


async def test_gather_returns_the_futures_and_awaiting_each_gives_its_value() -> None:
    ctx, session = _context()
    first = ctx.generic_call("S", "h", b"1")
    second = ctx.generic_call("S", "h", b"2")
    asyncio.get_running_loop().call_later(0.01, _complete, session, 2, 1, _value(b"two"))
    asyncio.get_running_loop().call_later(0.02, _complete, session, 1, 2, _value(b"one"))
    gathered = await restate.gather(first, second)
    assert gathered == [first, second] and gathered[0] is first
    assert all(future.is_completed() for future in gathered)
    # Restate's examples: results = [await f for f in await gather(*futs)]
    assert [await f for f in gathered] == [b"one", b"two"]
    a, b = await restate.gather(first, second)  # binds the futures, not values
    assert a is first and b is second
    assert await restate.gather() == []


async def test_gather_does_not_raise_a_failure_awaiting_the_future_does() -> None:
    ctx, session = _context()
    ok = ctx.generic_call("S", "h", b"")
    failed = ctx.generic_call("S", "h", b"")
    _complete(session, 1, 1, _value(b"fine"))
    _complete(session, 2, 2, _failure("nope", 422, {"field": "x"}))
    done = await restate.gather(ok, failed)
    assert await done[0] == b"fine"
    with pytest.raises(restate.TerminalError) as caught:
        await done[1]
    assert (caught.value.status_code, caught.value.metadata) == (422, {"field": "x"})


async def test_select_returns_name_and_value_of_the_first_completed() -> None:
    ctx, session = _context()
    call = ctx.generic_call("S", "h", b"")
    timeout = ctx.sleep(timedelta(hours=1))
    asyncio.get_running_loop().call_later(0.01, _complete, session, 1, 1, _value(b"r"))
    assert await restate.select(result=call, timeout=timeout) == ["result", b"r"]
    with pytest.raises(ValueError):
        await restate.select()


async def test_wait_completed_and_as_completed() -> None:
    ctx, session = _context()
    slow = ctx.sleep(timedelta(hours=1))
    fast = ctx.sleep(timedelta(seconds=1))
    asyncio.get_running_loop().call_later(
        0.01, _complete, session, 2, 1, pb.Completion(void=pb.Empty())
    )
    done, pending = await restate.wait_completed(slow, fast)
    assert done == [fast] and pending == [slow]
    assert await restate.wait_completed() == ([], [])
    _complete(session, 1, 2, pb.Completion(void=pb.Empty()))
    assert [f async for f in restate.as_completed(slow, fast)] == [fast, slow]


async def test_future_types_mirror_restate_sdk() -> None:
    ctx, _ = _context()
    sleep = ctx.sleep(timedelta(seconds=1))
    call = ctx.generic_call("S", "h", b"")
    send = ctx.generic_send("S", "h", b"")
    step = ctx.run_typed("step", lambda: 1)
    assert isinstance(sleep, restate.RestateDurableSleepFuture)
    assert isinstance(sleep, restate.RestateDurableFuture)
    assert not isinstance(sleep, restate.RestateDurableCallFuture)
    assert isinstance(call, restate.RestateDurableCallFuture)
    assert isinstance(call, restate.RestateDurableFuture)
    assert not isinstance(call, restate.RestateDurableSleepFuture)
    assert isinstance(step, restate.RestateDurableFuture)
    assert not isinstance(
        step, (restate.RestateDurableCallFuture, restate.RestateDurableSleepFuture)
    )
    assert isinstance(send, restate.SendHandle)
    assert not isinstance(send, restate.RestateDurableFuture)
    assert restate.RestateDurableSleepFuture is not restate.RestateDurableFuture


async def test_combinators_refuse_foreign_futures_with_a_terminal_error() -> None:
    # As restate-sdk: a TerminalError (not retried), since no retry can make such futures valid.
    ctx, _ = _context()
    other_ctx, _ = _context()
    mine = ctx.sleep(timedelta(seconds=1))
    theirs = other_ctx.sleep(timedelta(seconds=1))
    plain: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for bad in ((mine, theirs), (mine, plain)):
        for combinator in (restate.gather, restate.wait_completed):
            with pytest.raises(restate.TerminalError) as caught:
                await combinator(*bad)  # type: ignore[arg-type]
            assert caught.value.status_code == 500
        with pytest.raises(restate.TerminalError):
            await restate.select(a=bad[0], b=bad[1])  # type: ignore[arg-type]
        with pytest.raises(restate.TerminalError):
            [f async for f in restate.as_completed(*bad)]  # type: ignore[arg-type]
    with pytest.raises(restate.TerminalError, match="same SDK context"):
        await restate.gather(mine, theirs)
    with pytest.raises(restate.TerminalError, match="got Future"):
        await restate.gather(plain)  # type: ignore[type-var]
