"""Services of the security end-to-end tests (served by ``python -m sdk``)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import sdk as restate

echo = restate.Service("Echo")


def digests(headers: dict[str, str]) -> dict[str, str]:
    """What the handler saw, without putting the secrets into its output (which is logged)."""
    return {name: hashlib.sha256(value.encode()).hexdigest() for name, value in headers.items()}


@echo.handler()
async def headers(ctx: restate.Context) -> dict[str, str]:
    """The request headers as the handler sees them (their SHA-256)."""
    return digests(ctx.request().headers)


holder = restate.VirtualObject("Holder")


@holder.handler(inactivity_timeout=timedelta(0))
async def hold(ctx: restate.ObjectContext) -> dict[str, str]:
    """Waits (suspended at once) for an awakeable whose id it keeps in state ``awakeable``,
    then answers its headers from a replaying attempt."""
    awakeable_id, done = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", awakeable_id)
    await done
    return digests(ctx.request().headers)


@echo.handler()
async def relay(ctx: restate.Context, seed: str) -> dict[str, str]:
    """Calls ``headers`` with ``x-api-key: sk-relay-<seed reversed>``: a secret header from a
    handler (made here, so that only the header can bring it into the log)."""
    key = "sk-relay-" + seed[::-1]
    result: dict[str, str] = await ctx.service_call(headers, None, headers={"x-api-key": key})
    return result


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello, {name}!"


app = restate.app(services=[echo, greeter, holder])

# The same service names with a handler more: a changed deployment.
echo_changed = restate.Service("Echo")


@echo_changed.handler(name="headers")
async def headers_changed(ctx: restate.Context) -> dict[str, str]:
    return digests(ctx.request().headers)


@echo_changed.handler()
async def extra(ctx: restate.Context) -> str:
    return "new"


changed_app = restate.app(services=[echo_changed, greeter])

# Only Greeter: another deployment serving an existing service (its next revision).
greeter_v2 = restate.Service("Greeter")


@greeter_v2.handler(name="greet")
async def greet_v2(ctx: restate.Context, name: str) -> str:
    return f"Hello again, {name}!"


greeter_app = restate.app(services=[greeter_v2])
