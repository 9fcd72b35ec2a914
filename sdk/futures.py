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


class DurableFuture(Generic[T]):
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


class CallFuture(_CalleeHandle, DurableFuture[T]):
    """The result of a request-response call; also knows the callee's invocation id."""


class SendHandle(_CalleeHandle):
    """The handle of a one-way send."""

    def __init__(self, session: InvocationSession, index: int) -> None:
        self._session = session
        self.index = index


def _session_of(futures: tuple[DurableFuture[Any], ...]) -> InvocationSession:
    if not futures:
        raise ValueError("expected at least one future")
    for future in futures:
        if not isinstance(future, DurableFuture):
            raise TypeError(f"expected durable futures from the context, got {type(future)!r}")
    return futures[0]._session


async def select(**futures: DurableFuture[Any]) -> list[Any]:
    """Wait for the first of ``futures`` to complete; returns ``[name, value]``.

    Use with ``match``: ``case ["result", value]: ...``. If the first one failed, its
    TerminalError is raised. On replay the same future wins.
    """
    session = _session_of(tuple(futures.values()))
    by_index = {future.index: name for name, future in futures.items()}
    for future in futures.values():
        future._start()
    index = await session.wait_any(by_index)
    name = by_index[index]
    return [name, futures[name]._value()]


async def gather(*futures: DurableFuture[Any]) -> list[Any]:
    """Wait for all ``futures``; returns their values in argument order.

    Raises the TerminalError of the first failed future (in argument order) after all completed.
    """
    if not futures:
        return []
    session = _session_of(futures)
    for future in futures:
        future._start()
    pending = {future.index for future in futures}
    while pending:
        pending.discard(await session.wait_any(pending))
    return [future._value() for future in futures]


async def wait_completed(
    *futures: DurableFuture[Any],
) -> tuple[list[DurableFuture[Any]], list[DurableFuture[Any]]]:
    """Wait until at least one future completed; returns ``(done, pending)``."""
    session = _session_of(futures)
    for future in futures:
        future._start()
    await session.wait_any(future.index for future in futures)
    done = [future for future in futures if future.is_completed()]
    return done, [future for future in futures if not future.is_completed()]


async def as_completed(*futures: DurableFuture[Any]) -> AsyncIterator[DurableFuture[Any]]:
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


class LazyStep(DurableFuture[T]):
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
            self._task = asyncio.get_running_loop().create_task(self._execute())
