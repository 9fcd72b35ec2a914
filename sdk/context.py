"""The handler's view of Cairn: ``ctx``.

``Context`` serves every handler; ``ObjectSharedContext`` / ``ObjectContext`` add a virtual
object's state (read-only / read-write); ``WorkflowSharedContext`` / ``WorkflowContext`` add durable
promises. Every action is a journal entry, so a replayed handler sees the same results.
"""

from __future__ import annotations

import random as _random
import time as _time
import typing
import uuid as _uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, overload

from proto import endpoint_pb2 as pb
from sdk import _clock
from sdk.awakeable_ids import awakeable_id_of, check_awakeable_id
from sdk.definitions import handler_of
from sdk.errors import TerminalError
from sdk.futures import (
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from sdk.invocation import InvocationSession
from sdk.run import RunOptions, run_step
from sdk.serde import BytesSerde, JsonSerde, Serde, serde_for

T = TypeVar("T")
P = ParamSpec("P")

# What restate-sdk's ``restate.context`` offers handler code (``from restate.context import ...``),
# including the futures and RunOptions it re-exports from there.
__all__ = [
    "Context",
    "DurablePromise",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RunOptions",
    "SendHandle",
    "WorkflowContext",
    "WorkflowSharedContext",
]


@dataclass(frozen=True)
class Request:
    """The invocation as it arrived: its id, headers and raw body."""

    id: str
    headers: dict[str, str]
    attempt_headers: dict[str, str]
    body: bytes


def _decoder(serde: Serde[Any]) -> Callable[[pb.Completion], Any]:
    def decode(completion: pb.Completion) -> Any:
        if completion.HasField("value"):
            return serde.deserialize(completion.value)
        return None

    return decode


def _headers(headers: dict[str, str] | None) -> list[pb.Header]:
    return [pb.Header(key=k, value=v) for k, v in (headers or {}).items()]


def _delay_ms(delta: timedelta | None) -> int:
    if delta is None:
        return 0
    if delta < timedelta(0):
        raise TerminalError("a delay cannot be negative", 400)
    return int(delta.total_seconds() * 1000)


class Context:
    """What every handler can do: steps, calls, sends, timers, awakeables, determinism helpers."""

    def __init__(self, session: InvocationSession) -> None:
        self._session = session
        start = session.machine.start
        self._invocation_id = start.invocation_id
        self._key = start.key
        # Seeded on first use: most handlers never ask, and seeding costs more than the rest of
        # the context (issue 10).
        self._random: _random.Random | None = None

    # ------------------------------------------------------------------ request & determinism

    def request(self) -> Request:
        entry = self._session.machine.input
        headers = {h.key: h.value for h in entry.headers}
        return Request(self._invocation_id, headers, headers, entry.value)

    def random(self) -> _random.Random:
        """A random generator seeded per invocation: the same sequence on every replay."""
        if self._random is None:
            self._random = _random.Random(self._session.machine.start.random_seed)
        return self._random

    def uuid(self) -> _uuid.UUID:
        """A UUID v4 from ``random()``: the same on every replay."""
        return _uuid.UUID(int=self.random().getrandbits(128), version=4)

    def time(self) -> RestateDurableFuture[float]:
        """The current time (seconds since the epoch), journaled so replays see the same value."""
        return self.run_typed("time", _time.time, RunOptions(type_hint=float))

    # ------------------------------------------------------------------ durable steps

    @overload
    def run(
        self,
        name: str,
        action: Callable[..., Awaitable[T]],
        serde: Serde[T] | None = None,
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: type[T] | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> RestateDurableFuture[T]: ...

    @overload
    def run(
        self,
        name: str,
        action: Callable[..., T],
        serde: Serde[T] | None = None,
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: type[T] | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> RestateDurableFuture[T]: ...

    def run(
        self,
        name: str,
        action: Callable[..., Awaitable[T]] | Callable[..., T],
        serde: Serde[T] | None = None,
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: type[T] | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> RestateDurableFuture[T]:
        """Run ``action`` once and journal its result; on replay the journaled result is used."""
        options = RunOptions(
            max_attempts=max_attempts,
            max_retry_duration=max_retry_duration,
            serde=serde,
            type_hint=type_hint,
        )
        return run_step(self._session, name, action, options, args or (), {})

    @overload
    def run_typed(
        self,
        name: str,
        action: Callable[P, Coroutine[Any, Any, T]],
        options: RunOptions[T] | None = None,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RestateDurableFuture[T]: ...

    @overload
    def run_typed(
        self,
        name: str,
        action: Callable[P, T],
        options: RunOptions[T] | None = None,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RestateDurableFuture[T]: ...

    def run_typed(
        self,
        name: str,
        action: Callable[P, Coroutine[Any, Any, T]] | Callable[P, T],
        options: RunOptions[T] | None = None,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RestateDurableFuture[T]:
        """Like ``run``, with the closure's arguments passed through and typed options."""
        options = options or RunOptions()
        if options.type_hint is None and options.serde is None:
            try:
                hints = typing.get_type_hints(action)
            except Exception:  # noqa: BLE001 - builtins and lambdas have none
                hints = {}
            if "return" in hints and hints["return"] is not type(None):
                options = RunOptions(**{**options.__dict__, "type_hint": hints["return"]})
        return run_step(self._session, name, action, options, args, kwargs)

    # ------------------------------------------------------------------ timers

    def sleep(self, delta: timedelta, name: str | None = None) -> RestateDurableSleepFuture:
        """A durable timer: completes ``delta`` after now, across restarts and suspensions."""
        wake_up_ms = _clock.now_ms() + _delay_ms(delta)
        command = pb.JournalCommand(sleep=pb.SleepCommand(wake_up_ms=wake_up_ms, name=name or ""))
        index = self._session.command(command)
        return RestateDurableSleepFuture(self._session, index, lambda _completion: None)

    # ------------------------------------------------------------------ calls and sends

    def _call(
        self,
        target: pb.CallTarget,
        argument: bytes,
        output: Serde[Any],
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> RestateDurableCallFuture[Any]:
        call = pb.CallCommand(target=target, argument=argument, headers=_headers(headers))
        if idempotency_key is not None:
            call.idempotency_key = idempotency_key
        index = self._session.command(pb.JournalCommand(call=call))
        return RestateDurableCallFuture(self._session, index, _decoder(output))

    def _send(
        self,
        target: pb.CallTarget,
        argument: bytes,
        send_delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> SendHandle:
        delay_ms = _delay_ms(send_delay)
        send = pb.OneWayCallCommand(
            target=target,
            argument=argument,
            headers=_headers(headers),
            invoke_at_ms=_clock.now_ms() + delay_ms if delay_ms else 0,
        )
        if idempotency_key is not None:
            send.idempotency_key = idempotency_key
        index = self._session.command(pb.JournalCommand(one_way_call=send))
        return SendHandle(self._session, index)

    def _typed_target(
        self, tpe: Callable[..., Any], key: str | None, arg: Any
    ) -> tuple[pb.CallTarget, bytes, Serde[Any]]:
        handler = handler_of(tpe)
        keyed = handler.service.type != "service"
        if keyed and key is None:
            raise TerminalError(f"calling {handler.service.name}/{handler.name} needs a key", 400)
        target = pb.CallTarget(service=handler.service.name, handler=handler.name)
        if keyed:
            target.key = str(key)
        return target, handler.input_serde.serialize(arg), handler.output_serde

    def service_call(
        self,
        tpe: Callable[..., Any],
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        target, argument, output = self._typed_target(tpe, None, arg)
        return self._call(target, argument, output, idempotency_key, headers)

    def object_call(
        self,
        tpe: Callable[..., Any],
        key: str,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        target, argument, output = self._typed_target(tpe, key, arg)
        return self._call(target, argument, output, idempotency_key, headers)

    def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[bytes]:
        """Call by name with a raw (already serialized) argument; the result is raw bytes."""
        target = pb.CallTarget(service=service, handler=handler)
        if key is not None:
            target.key = key
        return self._call(target, arg, BytesSerde(), idempotency_key, headers)

    def service_send(
        self,
        tpe: Callable[..., Any],
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        target, argument, _ = self._typed_target(tpe, None, arg)
        return self._send(target, argument, send_delay, idempotency_key, headers)

    def object_send(
        self,
        tpe: Callable[..., Any],
        key: str,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        target, argument, _ = self._typed_target(tpe, key, arg)
        return self._send(target, argument, send_delay, idempotency_key, headers)

    def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        target = pb.CallTarget(service=service, handler=handler)
        if key is not None:
            target.key = key
        return self._send(target, arg, send_delay, idempotency_key, headers)

    # A workflow is keyed like an object; calling its ``run`` handler submits it.
    workflow_call = object_call
    workflow_send = object_send

    def cancel_invocation(self, invocation_id: str) -> None:
        """Cooperatively cancel another invocation."""
        command = pb.CancelInvocationCommand(invocation_id=invocation_id)
        self._session.command(pb.JournalCommand(cancel_invocation=command))

    # ------------------------------------------------------------------ awakeables

    @overload
    def awakeable(self) -> tuple[str, RestateDurableFuture[Any]]: ...

    @overload
    def awakeable(
        self, serde: Serde[T] | None = None, type_hint: type[T] | None = None
    ) -> tuple[str, RestateDurableFuture[T]]: ...

    def awakeable(
        self, serde: Serde[T] | None = None, type_hint: type[T] | None = None
    ) -> tuple[str, RestateDurableFuture[T]]:
        """A future completed from outside through its id (HTTP or another handler)."""
        index = self._session.command(pb.JournalCommand(awakeable=pb.AwakeableCommand()))
        future: RestateDurableFuture[T] = RestateDurableFuture(
            self._session, index, _decoder(serde_for(serde, type_hint))
        )
        return awakeable_id_of(self._invocation_id, index), future

    def resolve_awakeable(self, name: str, value: Any, serde: Serde[Any] | None = None) -> None:
        check_awakeable_id(name)
        command = pb.CompleteAwakeableCommand(
            awakeable_id=name, value=(serde or JsonSerde()).serialize(value)
        )
        self._session.command(pb.JournalCommand(complete_awakeable=command))

    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = 500) -> None:
        check_awakeable_id(name)
        failure = pb.Failure(code=failure_code, message=failure_message)
        command = pb.CompleteAwakeableCommand(awakeable_id=name, failure=failure)
        self._session.command(pb.JournalCommand(complete_awakeable=command))


class ObjectSharedContext(Context):
    """A virtual object's shared handler: reads the object's state, runs concurrently."""

    def key(self) -> str:
        return self._key

    def get(
        self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None
    ) -> RestateDurableFuture[T | None]:
        """The value of state ``name`` (None when unset)."""
        command = pb.JournalCommand(get_state=pb.GetStateCommand(key=name))
        index = self._session.command(command)
        return RestateDurableFuture(self._session, index, _decoder(serde_for(serde, type_hint)))

    def state_keys(self) -> RestateDurableFuture[list[str]]:
        command = pb.JournalCommand(get_state_keys=pb.GetStateKeysCommand())
        index = self._session.command(command)
        return RestateDurableFuture(
            self._session, index, lambda completion: list(completion.state_keys.keys)
        )


class ObjectContext(ObjectSharedContext):
    """A virtual object's exclusive handler: one at a time per key, may write state."""

    def set(self, name: str, value: Any, serde: Serde[Any] | None = None) -> None:
        encoded = (serde or JsonSerde()).serialize(value)
        command = pb.JournalCommand(set_state=pb.SetStateCommand(key=name, value=encoded))
        self._session.command(command)

    def clear(self, name: str) -> None:
        self._session.command(pb.JournalCommand(clear_state=pb.ClearStateCommand(key=name)))

    def clear_all(self) -> None:
        self._session.command(pb.JournalCommand(clear_all_state=pb.ClearAllStateCommand()))


class DurablePromise:
    """A workflow's named promise: resolved or rejected once, readable by the run handler."""

    def __init__(self, session: InvocationSession, name: str, serde: Serde[Any]) -> None:
        self._session = session
        self.name = name
        self._serde = serde

    def value(self) -> RestateDurableFuture[Any]:
        """Completes when the promise is resolved (value) or rejected (raises TerminalError)."""
        index = self._session.command(
            pb.JournalCommand(get_promise=pb.GetPromiseCommand(name=self.name))
        )
        return RestateDurableFuture(self._session, index, _decoder(self._serde))

    def peek(self) -> RestateDurableFuture[Any]:
        """The value now if resolved, None if not yet; a rejected promise raises."""
        index = self._session.command(
            pb.JournalCommand(peek_promise=pb.PeekPromiseCommand(name=self.name))
        )
        return RestateDurableFuture(self._session, index, _decoder(self._serde))

    def resolve(self, value: Any) -> RestateDurableFuture[None]:
        """Resolve the promise; awaiting raises TerminalError(409) if it was already completed."""
        command = pb.CompletePromiseCommand(name=self.name, value=self._serde.serialize(value))
        return self._complete(command)

    def reject(self, message: str, code: int = 500) -> RestateDurableFuture[None]:
        command = pb.CompletePromiseCommand(
            name=self.name, failure=pb.Failure(code=code, message=message)
        )
        return self._complete(command)

    def _complete(self, command: pb.CompletePromiseCommand) -> RestateDurableFuture[None]:
        index = self._session.command(pb.JournalCommand(complete_promise=command))
        return RestateDurableFuture(self._session, index, lambda _completion: None)

    # ``await ctx.promise(...).resolve(v)`` is the documented form; plain ``resolve(v)`` without
    # await still journals the resolution because the command is sent when the method is called.


class _Promises:
    _session: InvocationSession

    def promise(
        self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None
    ) -> DurablePromise:
        return DurablePromise(self._session, name, serde_for(serde, type_hint))


class WorkflowSharedContext(_Promises, ObjectSharedContext):
    """A workflow's shared handler: reads its state, signals and reads its promises."""


class WorkflowContext(_Promises, ObjectContext):
    """A workflow's run handler: state, promises, and everything a handler can do."""


def context_class(service_type: str, kind: str | None) -> type[Context]:
    if service_type == "virtual_object":
        return ObjectSharedContext if kind == "shared" else ObjectContext
    if service_type == "workflow":
        return WorkflowContext if kind == "workflow" else WorkflowSharedContext
    return Context
