"""Example services for the demo (`./scripts/demo`): a greeter, a counter object, durable steps,
a workflow waiting on a durable promise."""

from __future__ import annotations

from datetime import timedelta

import sdk as restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello, {name}!"


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    count = await ctx.get("count", type_hint=int) or 0
    ctx.set("count", count + delta)
    return count + delta


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    ctx.clear_all()


checkout = restate.Service("Checkout")

_charge_attempts: dict[str, int] = {}


def charge(order_id: str) -> str:
    """A flaky payment call: fails the first time for each order, then succeeds."""
    _charge_attempts[order_id] = _charge_attempts.get(order_id, 0) + 1
    if _charge_attempts[order_id] == 1:
        raise ConnectionError("payment provider timed out")
    return f"payment-{order_id}"


@checkout.handler()
async def place_order(ctx: restate.Context, order_id: str) -> dict[str, str]:
    reservation = await ctx.run_typed("reserve", lambda: f"reservation-{order_id}")
    payment = await ctx.run_typed(
        "charge",
        charge,
        restate.RunOptions(max_attempts=3, initial_retry_interval=timedelta(milliseconds=100)),
        order_id=order_id,
    )
    confirmation = str(ctx.uuid())
    return {"reservation": reservation, "payment": payment, "confirmation": confirmation}


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    """Runs once per key: waits (suspended, holding nothing) until the link is clicked."""
    ctx.set("stage", "waiting for the email link")
    link = await ctx.promise("email-link", type_hint=str).value()
    ctx.set("stage", "verified")
    return f"{email} verified with {link}"


@signup.handler()
async def click(ctx: restate.WorkflowSharedContext, link: str) -> None:
    await ctx.promise("email-link", type_hint=str).resolve(link)


@signup.handler()
async def stage(ctx: restate.WorkflowSharedContext) -> str | None:
    return await ctx.get("stage", type_hint=str)


app = restate.app(services=[greeter, counter, checkout, signup])
