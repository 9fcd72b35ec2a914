"""Handlers written exactly as for restate-sdk (``import restate``), served by Cairn's sdk.

``restate`` is the alias package in tests/compat. Nothing here may use a Cairn-only name. Names
come from restate-sdk's submodules (``restate.exceptions``, ``restate.context``...), the import
style of Restate's own test-services, so this suite also checks that they resolve.
"""

# Written as restate-sdk users write it: typing.Optional / Dict on purpose.
# ruff: noqa: UP006, UP035, UP045

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Dict, Iterable, List, NotRequired, Optional, TypedDict

import restate
from restate.asyncio import gather, select
from restate.context import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
)
from restate.exceptions import TerminalError
from restate.object import VirtualObject
from restate.service import Service

# ---------------------------------------------------------------- optional fields


class ProxyRequest(TypedDict):
    """Restate's own test-services input: every Optional field may be left out."""

    serviceName: str
    virtualObjectKey: Optional[str]
    handlerName: str
    message: Iterable[int]
    delayMillis: Optional[int]
    idempotencyKey: Optional[str]


class Batch(TypedDict):
    requests: List[ProxyRequest]
    note: NotRequired[str]


@dataclass
class Greeting:
    name: str
    title: Optional[str] = None
    punctuation: str = "!"


compat = Service("CompatSdk", description="restate-sdk style handlers", metadata={"team": "compat"})


@compat.handler()
async def proxy(ctx: Context, req: ProxyRequest) -> Dict[str, Any]:
    return {
        "keys": sorted(req.keys()),
        "delayMillis": req.get("delayMillis"),
        "message": list(req["message"]),
    }


@compat.handler()
async def batch(ctx: Context, batch: Batch) -> Dict[str, Any]:
    return {
        "services": [r["serviceName"] for r in batch["requests"]],
        "delayed": sum(1 for r in batch["requests"] if r.get("delayMillis") is not None),
        "note": batch.get("note"),
    }


@compat.handler()
async def greet(ctx: Context, greeting: Greeting) -> str:
    title = f"{greeting.title} " if greeting.title else ""
    return f"Hello, {title}{greeting.name}{greeting.punctuation}"


@compat.handler()
async def forward(ctx: Context, req: ProxyRequest) -> Dict[str, Any]:
    """The same optional-field input, as a call argument and result between handlers."""
    return await ctx.service_call(proxy, req)


# ---------------------------------------------------------------- TerminalError metadata


@compat.handler()
async def reject(ctx: Context, reason: str) -> str:
    raise TerminalError(
        f"rejected: {reason}", status_code=422, metadata={"reason": reason, "retry": "never"}
    )


def _refuse(reason: str) -> str:
    raise TerminalError("step refused", 409, {"step": reason})


@compat.handler()
async def catch_rejection(ctx: Context, reason: str) -> Dict[str, Any]:
    caught = {}
    try:
        await ctx.service_call(reject, reason)
    except TerminalError as e:
        caught["call"] = {
            "status_code": e.status_code,
            "message": e.message,
            "metadata": e.metadata,
        }
    try:
        await ctx.run_typed("refuse", _refuse, reason=reason)
    except TerminalError as e:
        caught["run"] = {"status_code": e.status_code, "message": e.message, "metadata": e.metadata}
    return caught


@compat.handler()
async def rethrow(ctx: Context, reason: str) -> str:
    """A caller that lets the callee's failure through: the metadata reaches the HTTP client."""
    return await ctx.service_call(reject, reason)


# ---------------------------------------------------------------- combinators and futures


@compat.handler(metadata={"pure": "yes"})
async def square(ctx: Context, n: int) -> int:
    """The square of n."""
    return n * n


@compat.handler()
async def squares(ctx: Context, n: int) -> Dict[str, Any]:
    # The pattern of Restate's examples: gather returns the futures, await each for its value.
    futures = [ctx.service_call(square, i) for i in range(n)]
    results = [await f for f in await gather(*futures)]
    a, b = await gather(ctx.service_call(square, 2), ctx.service_call(square, 3))
    return {
        "results": results,
        "pair_are_futures": isinstance(a, RestateDurableCallFuture)
        and isinstance(b, RestateDurableFuture),
        "pair": [await a, await b],
    }


@compat.handler()
async def future_types(ctx: Context) -> Dict[str, Any]:
    sleep = ctx.sleep(timedelta(milliseconds=10))
    call = ctx.service_call(square, 4)
    kinds = {
        "sleep_is_sleep_future": isinstance(sleep, RestateDurableSleepFuture),
        "sleep_is_durable_future": isinstance(sleep, RestateDurableFuture),
        "call_is_sleep_future": isinstance(call, RestateDurableSleepFuture),
        "call_is_call_future": isinstance(call, RestateDurableCallFuture),
    }
    await gather(sleep, call)
    match await select(
        result=ctx.service_call(square, 5), timeout=ctx.sleep(timedelta(seconds=60))
    ):
        case ["result", value]:
            selected = value
        case ["timeout", _]:
            selected = None
    return {**kinds, "square": await call, "selected": selected}


# ---------------------------------------------------------------- zero inactivity timeout

waiter = VirtualObject("CompatWaiter", inactivity_timeout=timedelta(0))


@waiter.handler()
async def wait(ctx: ObjectContext) -> str:
    awakeable_id, promise = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", awakeable_id)
    return f"woke with {await promise}"


@waiter.handler(kind="shared")
async def awakeable(ctx: ObjectSharedContext) -> Optional[str]:
    return await ctx.get("awakeable", type_hint=str)


app = restate.app(services=[compat, waiter])
