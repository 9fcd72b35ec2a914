"""restate-sdk options: zero durations are honoured, unsupported keywords are refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
import pytest

import sdk as restate
from partition_processor.commands import RetryPolicy
from proto import endpoint_pb2 as pb
from runtime.invoker.codec import retry_policy_from_pb
from runtime.invoker.discovery import deployment_from_manifest
from runtime.metadata import DAY_MS, HandlerInfo, ServiceInfo, completion_retention_ms
from sdk._engine.machine import InvocationMachine
from sdk._transport.server import (
    DEFAULT_INACTIVITY_TIMEOUT,
    handler_manifest,
    inactivity_timeout_of,
    manifest_of,
    run_attempt,
)
from sdk.definitions import handler_of
from sdk.errors import Suspended
from sdk.futures import LazyStep
from sdk.invocation import InvocationSession


def _session(timeout_s: float) -> InvocationSession:
    start = pb.Start(invocation_id="inv_test", known_entries=1)
    entry = pb.JournalEntry(index=0, command=pb.JournalCommand(input=pb.InputCommand(value=b"")))
    return InvocationSession(InvocationMachine(start, [entry]), timeout_s)


def _kinds(session: InvocationSession) -> list[str]:
    kinds = []
    while not session.outgoing.empty():
        message = session.outgoing.get_nowait()
        assert message is not None
        kinds.append(str(message.WhichOneof("kind")))
    return kinds


# ---------------------------------------------------------------- zero durations


def test_zero_durations_reach_the_manifest_as_zero() -> None:
    svc = restate.Service("Z", inactivity_timeout=timedelta(0))

    @svc.handler(
        idempotency_retention=timedelta(0),
        invocation_retry_policy=restate.InvocationRetryPolicy(
            initial_interval=timedelta(0), max_interval=timedelta(0)
        ),
    )
    async def h(ctx: restate.Context) -> None:
        return None

    handler = handler_of(h)
    assert inactivity_timeout_of(handler) == timedelta(0)
    manifest = handler_manifest(handler)
    assert manifest.HasField("inactivity_timeout_ms") and manifest.inactivity_timeout_ms == 0
    assert manifest.HasField("idempotency_retention_ms")
    assert manifest.idempotency_retention_ms == 0
    policy = retry_policy_from_pb(manifest.retry_policy)
    assert (policy.initial_interval_ms, policy.max_interval_ms) == (0, 0)
    assert policy.factor == RetryPolicy().factor  # left unset: the default


def test_unset_durations_take_the_defaults() -> None:
    svc = restate.Service("U")

    @svc.handler()
    async def h(ctx: restate.Context) -> None:
        return None

    handler = handler_of(h)
    assert inactivity_timeout_of(handler) == DEFAULT_INACTIVITY_TIMEOUT
    assert not handler_manifest(handler).HasField("inactivity_timeout_ms")
    assert retry_policy_from_pb(pb.RetryPolicy()) == RetryPolicy()


def test_zero_retentions_are_honoured_by_the_runtime() -> None:
    run = HandlerInfo("run", "workflow", workflow_retention_ms=0)
    assert completion_retention_ms(run, idempotent=False) == 0
    add = HandlerInfo("add", "exclusive", idempotency_retention_ms=0)
    assert completion_retention_ms(add, idempotent=True) == 0
    assert completion_retention_ms(HandlerInfo("run", "workflow"), idempotent=False) == DAY_MS


async def test_a_zero_inactivity_timeout_suspends_at_once() -> None:
    session = _session(0.0)
    ctx = restate.Context(session)
    with pytest.raises(Suspended) as suspended:
        await ctx.sleep(timedelta(hours=1))
    assert suspended.value.awaiting == [1]
    assert _kinds(session) == ["command", "suspension"]


class _CountingSession(InvocationSession):
    """Counts how often a waiter goes back to waiting (a spinning waiter does it endlessly)."""

    waits = 0

    async def _wait_for_change(self, wanted: frozenset[int], suspendable: bool = True) -> None:
        self.waits += 1
        await super()._wait_for_change(wanted, suspendable)


async def test_a_running_step_is_not_suspended_by_a_zero_timeout() -> None:
    start = pb.Start(invocation_id="inv_test", known_entries=1)
    entry = pb.JournalEntry(index=0, command=pb.JournalCommand(input=pb.InputCommand(value=b"")))
    session = _CountingSession(InvocationMachine(start, [entry]), 0.0)
    ctx = restate.Context(session)

    async def slow() -> int:
        for _ in range(20):  # several loop turns: a zero timeout would fire in between
            await asyncio.sleep(0)
        return 7

    with pytest.raises(Suspended):
        await ctx.run_typed("slow", slow)  # the result is proposed, then it awaits the ack
    assert _kinds(session) == ["command", "run_completion", "suspension"]
    # one wait while the step ran (woken when it finished), one that suspended: no spinning
    assert session.waits == 2


# ---------------------------------------------------------------- refused keywords


def test_unsupported_keywords_are_refused_clearly() -> None:
    svc = restate.Service("S")

    @svc.handler()
    async def h(ctx: restate.Context) -> None:
        return None

    # identity_keys are supported (tests/integration/sdk/test_identity.py); a key that is not
    # one is refused when the app is made, not when the first call is refused.
    with pytest.raises(ValueError, match="publickeyv1_"):
        restate.app([svc], identity_keys=["not-a-key"])
    with pytest.raises(ValueError, match="32 bytes"):
        restate.app([svc], identity_keys=["publickeyv1_abc"])
    with pytest.raises(NotImplementedError, match="bidi"):
        restate.app([svc], protocol="request_response")
    with pytest.raises(NotImplementedError, match="journal_value_codec"):
        restate.app([svc], journal_value_codec=object())
    with pytest.raises(TypeError):
        restate.app([svc], no_such_option=True)  # type: ignore[call-arg]
    assert isinstance(restate.app([svc], protocol="bidi", identity_keys=[]), restate.App)


@pytest.mark.parametrize(
    ("keyword", "value", "named"),
    [
        ("journal_retention", timedelta(days=1), "journal_retention"),
        ("ingress_private", True, "ingress_private"),
    ],
)
def test_unsupported_service_and_handler_options_are_refused(
    keyword: str, value: object, named: str
) -> None:
    with pytest.raises(NotImplementedError, match=named):
        restate.VirtualObject("O", **{keyword: value})  # type: ignore[arg-type]
    svc = restate.Service("S")
    with pytest.raises(NotImplementedError, match=f"S/h: {named}"):

        @svc.handler(**{keyword: value})  # type: ignore[arg-type]
        async def h(ctx: restate.Context) -> None:
            return None


def test_abort_timeout_is_accepted_and_reaches_the_runtime() -> None:
    """restate-sdk's ``abort_timeout`` (once refused): the handler's, else the service's, in the
    manifest and in the runtime's handler metadata; zero is honoured, unset stays unset (the
    node's ``--abort-timeout-ms`` then applies)."""
    svc = restate.Service("A", abort_timeout=timedelta(seconds=7))

    @svc.handler()
    async def inherited(ctx: restate.Context) -> None:
        return None

    @svc.handler(abort_timeout=timedelta(0))
    async def zero(ctx: restate.Context) -> None:
        return None

    obj = restate.VirtualObject("B")

    @obj.handler(abort_timeout=timedelta(milliseconds=1500))
    async def own(ctx: restate.ObjectContext) -> None:
        return None

    @obj.handler()
    async def unset(ctx: restate.ObjectContext) -> None:
        return None

    assert handler_manifest(handler_of(inherited)).abort_timeout_ms == 7000
    zero_manifest = handler_manifest(handler_of(zero))
    assert zero_manifest.HasField("abort_timeout_ms") and zero_manifest.abort_timeout_ms == 0
    assert not handler_manifest(handler_of(unset)).HasField("abort_timeout_ms")
    deployment = deployment_from_manifest("http://x", manifest_of(restate.app([svc, obj])))
    timeouts = {
        (service.name, name): handler.abort_timeout_ms
        for service in deployment.services
        for name, handler in service.handlers.items()
    }
    assert timeouts == {
        ("A", "inherited"): 7000,
        ("A", "zero"): 0,
        ("B", "own"): 1500,
        ("B", "unset"): None,
    }


def test_options_with_cairns_behaviour_are_accepted() -> None:
    obj = restate.VirtualObject(
        "O", journal_retention=timedelta(0), ingress_private=False, enable_lazy_state=True
    )

    @obj.handler(state_preload=["a"], enable_lazy_state=False, journal_retention=timedelta(0))
    async def h(ctx: restate.ObjectContext) -> None:
        return None

    assert "h" in obj.handlers


# ---------------------------------------------------------------- invocation_context_managers


async def test_invocation_context_managers_wrap_each_attempt_service_first() -> None:
    events: list[str] = []

    def manager(name: str) -> contextlib.AbstractAsyncContextManager[None]:
        @contextlib.asynccontextmanager
        async def around() -> AsyncIterator[None]:
            events.append(f"enter {name}")
            yield
            events.append(f"exit {name}")

        return around()

    svc = restate.Service("C", invocation_context_managers=[lambda: manager("service")])

    @svc.handler(invocation_context_managers=[lambda: manager("handler")])
    async def h(ctx: restate.Context) -> str:
        events.append("handler")
        return "ok"

    session = _session(60.0)
    await run_attempt(session, handler_of(h))
    assert events == ["enter service", "enter handler", "handler", "exit handler", "exit service"]
    assert _kinds(session) == ["command", "end"]


# ---------------------------------------------------------------- RunOptions


async def test_run_options_max_duration_retries_in_place_then_fails_terminally() -> None:
    session = _session(60.0)
    ctx = restate.Context(session)
    calls = []

    def flaky() -> int:
        calls.append(1)
        raise RuntimeError("down")

    options: restate.RunOptions[int] = restate.RunOptions(
        max_duration=timedelta(milliseconds=300), initial_retry_interval=timedelta(milliseconds=10)
    )
    step = ctx.run_typed("flaky", flaky, options)
    step._start()
    assert isinstance(step, LazyStep) and step._task is not None
    await step._task
    messages = [session.outgoing.get_nowait() for _ in range(session.outgoing.qsize())]
    completion = messages[-1]
    assert completion is not None and completion.WhichOneof("kind") == "run_completion"
    assert completion.run_completion.failure.code == 500
    assert "down" in completion.run_completion.failure.message
    assert len(calls) >= 2  # retried in place until max_duration ran out


# ---------------------------------------------------------------- description and metadata


def test_description_docstrings_and_metadata_reach_the_runtime() -> None:
    svc = restate.Service("Doc", description="Greets people", metadata={"team": "core"})

    @svc.handler(metadata={"visibility": "public"})
    async def greet(ctx: restate.Context, name: str) -> str:
        """Says hello."""
        return name

    @svc.handler()
    async def plain(ctx: restate.Context) -> None:
        return None

    deployment = deployment_from_manifest("http://x", manifest_of(restate.app([svc])))
    [service] = deployment.services
    assert (service.documentation, service.metadata) == ("Greets people", {"team": "core"})
    greet_info = service.handlers["greet"]
    assert (greet_info.documentation, greet_info.metadata) == (
        "Says hello.",
        {"visibility": "public"},
    )
    assert (service.handlers["plain"].documentation, service.handlers["plain"].metadata) == (
        None,
        {},
    )
    # a service registered before these fields existed still decodes
    old = msgspec.msgpack.encode(
        {"name": "Old", "service_type": "service", "handlers": {}, "deployment_id": "d"}
    )
    assert msgspec.msgpack.decode(old, type=ServiceInfo).metadata == {}


def test_metadata_must_be_strings() -> None:
    with pytest.raises(TypeError, match="dict\\[str, str\\]"):
        restate.Service("Bad", metadata={"n": 1})  # type: ignore[dict-item]
