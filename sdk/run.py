"""``ctx.run``: a durable step whose result is journaled once and replayed afterwards."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from proto import endpoint_pb2 as pb
from sdk.errors import AttemptClosed, ReplayExhausted, Suspended, TerminalError
from sdk.futures import LazyStep, RestateDurableFuture
from sdk.invocation import InvocationSession
from sdk.serde import Serde, serde_for

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions(Generic[T]):
    """Retries of a step inside one attempt, and how its result is (de)serialized.

    With neither ``max_attempts`` nor ``max_duration``, a failing step fails the attempt and
    the runtime retries the whole invocation with the handler's retry policy (the journal replays up
    to the step, which runs again). With either, the step is retried in place with exponential
    backoff; when they are exhausted the last error is journaled as the step's TerminalError.
    """

    max_attempts: int | None = None
    max_retry_duration: timedelta | None = None  # restate-sdk's deprecated name of max_duration
    initial_retry_interval: timedelta | None = None
    max_retry_interval: timedelta | None = None
    retry_interval_factor: float | None = None
    serde: Serde[T] | None = None
    type_hint: type[T] | None = None
    max_duration: timedelta | None = None

    @property
    def retry_duration(self) -> timedelta | None:
        """``max_duration``, or the deprecated ``max_retry_duration`` when only that is set."""
        return self.max_duration if self.max_duration is not None else self.max_retry_duration


def run_step(
    session: InvocationSession,
    name: str,
    action: Callable[..., Any],
    options: RunOptions[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> RestateDurableFuture[Any]:
    serde = serde_for(options.serde, options.type_hint)
    index = session.command(pb.JournalCommand(run=pb.RunCommand(name=name)))
    machine = session.machine
    if machine.start.replay_only and machine.completion(index) is None:
        raise ReplayExhausted()  # an upgrade check never runs a step's side effect

    def decode(completion: pb.Completion) -> Any:
        return serde.deserialize(completion.value) if completion.HasField("value") else None

    async def execute() -> None:  # counted as a running step by LazyStep._start
        try:
            result = await _attempts(name, action, options, args, kwargs, serde)
            session.machine.sys_run_completion(index, result)
            session.flush()
        except (Suspended, AttemptClosed, asyncio.CancelledError):
            raise
        except BaseException as exc:  # noqa: BLE001 - any other failure fails the attempt
            session.fail_attempt(exc)
        finally:
            session.step_finished()

    return LazyStep(session, index, decode, execute)


async def _attempts(
    name: str,
    action: Callable[..., Any],
    options: RunOptions[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    serde: Serde[Any],
) -> pb.ProposeRunCompletion:
    """Run the closure, retrying in place as the options say; returns what to journal."""
    max_duration = options.retry_duration
    retry_in_place = options.max_attempts is not None or max_duration is not None
    # None is unset; a zero interval is honoured (retry at once)
    initial = options.initial_retry_interval
    delay = (timedelta(milliseconds=100) if initial is None else initial).total_seconds()
    maximum = options.max_retry_interval
    max_delay = (timedelta(seconds=10) if maximum is None else maximum).total_seconds()
    factor = 2.0 if options.retry_interval_factor is None else options.retry_interval_factor
    deadline = time.monotonic() + max_duration.total_seconds() if max_duration is not None else None
    attempt = 0
    while True:
        attempt += 1
        try:
            value = action(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return pb.ProposeRunCompletion(value=serde.serialize(value))
        except TerminalError as exc:
            return pb.ProposeRunCompletion(failure=exc.to_failure())
        except Exception as exc:
            if not retry_in_place:
                raise
            exhausted = (options.max_attempts is not None and attempt >= options.max_attempts) or (
                deadline is not None and time.monotonic() + delay > deadline
            )
            if exhausted:
                message = f"step {name!r} failed after {attempt} attempts: {exc!r}"
                return pb.ProposeRunCompletion(failure=pb.Failure(code=500, message=message))
            log.warning("step %r attempt %d failed, retrying: %r", name, attempt, exc)
            await asyncio.sleep(delay)
            delay = min(delay * factor, max_delay)
