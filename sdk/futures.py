"""Durable futures (results of journaled actions) and the combinators over them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, Generic, TypeVar

from proto import endpoint_pb2 as pb
from sdk.errors import TerminalError
from sdk.invocation import InvocationSession

T = TypeVar("T")


def _raise_failure(completion: pb.Completion) -> None:
    if completion.HasField("failure"):
        raise TerminalError.from_failure(completion.failure)


class RestateDurableFuture(Generic[T]):
    """The result of a journaled action. Await it for the value; a failure raises TerminalError."""

    def __init__(
        self,
        session: InvocationSession,
        index: int,
        decode: Callable[[pb.Completion], T],
    ) -> None:
        self._session = session
        self.index = index
        self._decode = decode

    def _start(self) -> None:
        """Begin any local work the completion depends on (a step's closure)."""

    def is_completed(self) -> bool:
        return self._session.machine.completion(self.index) is not None

    def _value(self) -> T:
        completed = self._session.machine.completion(self.index)
        assert completed is not None, "awaited a future that is not completed"
        _raise_failure(completed.completion)
        return self._decode(completed.completion)

    async def _result(self) -> T:
        self._start()
        await self._session.wait_any([self.index])
        return self._value()

    def __await__(self) -> Generator[Any, None, T]:
        return self._result().__await__()


class _CalleeHandle:
    """What a call future and a send handle share: the callee's id, and cancelling it."""

    _session: InvocationSession
    index: int

    async def invocation_id(self) -> str:
        return await self._session.wait_callee_id(self.index)

    async def cancel_invocation(self) -> None:
        """Cooperatively cancel the callee (a call's future then fails with its cancellation)."""
        callee = await self.invocation_id()
        self._session.command(
            pb.JournalCommand(cancel_invocation=pb.CancelInvocationCommand(invocation_id=callee))
        )


class RestateDurableCallFuture(_CalleeHandle, RestateDurableFuture[T]):
    """The result of a request-response call; also knows the callee's invocation id."""


class RestateDurableSleepFuture(RestateDurableFuture[None]):
    """A durable timer (``ctx.sleep``): completes with ``None`` when it fires."""


class SendHandle(_CalleeHandle):
    """The handle of a one-way send (not a future: there is no result to await)."""

    def __init__(self, session: InvocationSession, index: int) -> None:
        self._session = session
        self.index = index


# The combinators hand back the futures they were given, so they keep their precise types.
F = TypeVar("F", bound=RestateDurableFuture[Any])


def _session_of(futures: tuple[RestateDurableFuture[Any], ...]) -> InvocationSession:
    # A TerminalError (500), as restate-sdk raises: passing such futures is a bug in the handler
    # that no retry can fix, so retrying it would only repeat the failure.
    for future in futures:
        if not isinstance(future, RestateDurableFuture):
            raise TerminalError(
                f"all futures must be durable futures created by the SDK context, got "
                f"{type(future).__name__}"
            )
    session = futures[0]._session
    if any(future._session is not session for future in futures):
        raise TerminalError("all futures must be created by the same SDK context")
    return session


async def select(**futures: RestateDurableFuture[Any]) -> list[Any]:
    """Wait for the first of ``futures`` to complete; returns ``[name, value]``.

    Use with ``match``: ``case ["result", value]: ...``. If the first one failed, its
    TerminalError is raised. On replay the same future wins.
    """
    if not futures:
        raise ValueError("At least one future must be passed.")
    session = _session_of(tuple(futures.values()))
    by_index = {future.index: name for name, future in futures.items()}
    for future in futures.values():
        future._start()
    index = await session.wait_any(by_index)
    name = by_index[index]
    return [name, futures[name]._value()]


async def gather(*futures: F) -> list[F]:
    """Wait until all ``futures`` have completed; returns the futures themselves, in argument order.

    As in restate-sdk: ``await`` each one for its value (or its TerminalError), e.g.
    ``[await f for f in await gather(*futures)]``. So ``a, b = await gather(x, y)`` binds the
    futures ``x`` and ``y``, not their values. A failed future does not make ``gather`` raise.
    """
    if not futures:
        return []
    session = _session_of(futures)
    for future in futures:
        future._start()
    pending = {future.index for future in futures}
    while pending:
        pending.discard(await session.wait_any(pending))
    return list(futures)


async def wait_completed(*futures: F) -> tuple[list[F], list[F]]:
    """Wait until at least one future completed; returns ``(done, pending)`` in argument order."""
    if not futures:
        return [], []
    session = _session_of(futures)
    for future in futures:
        future._start()
    await session.wait_any(future.index for future in futures)
    done = [future for future in futures if future.is_completed()]
    return done, [future for future in futures if not future.is_completed()]


async def as_completed(*futures: F) -> AsyncIterator[F]:
    """Yield ``futures`` in the order they complete (the same order on replay)."""
    if not futures:
        return
    session = _session_of(futures)
    for future in futures:
        future._start()
    remaining = {future.index: future for future in futures}
    while remaining:
        index = await session.wait_any(remaining)
        yield remaining.pop(index)


class LazyStep(RestateDurableFuture[T]):
    """A ``ctx.run`` step: its closure runs once, when first awaited (or raced)."""

    def __init__(
        self,
        session: InvocationSession,
        index: int,
        decode: Callable[[pb.Completion], T],
        execute: Callable[[], Any],
    ) -> None:
        super().__init__(session, index, decode)
        self._execute = execute
        self._task: asyncio.Task[None] | None = None

    def _start(self) -> None:
        if self._task is None and not self.is_completed():
            # Counted as running from now, not from the task's first step: a waiter with a zero
            # inactivity timeout would otherwise suspend before the step got to run.
            self._session.step_started()
            self._task = asyncio.get_running_loop().create_task(self._execute())
